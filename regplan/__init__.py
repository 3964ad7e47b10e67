"""regplan: reviewed, reversible cleanup of Docker registry filesystem storage."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("regplan")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
