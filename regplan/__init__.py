"""regplan: reviewed, reversible cleanup of Docker registry filesystem storage."""

__version__ = "0.1.0.dev0"
"""The one place the version is written (pyproject.toml reads it from here)."""
