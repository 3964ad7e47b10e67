"""One pull of a manifest, as a notification or an access log line gives it (pure)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import attrs

from regplan.errors import RegplanError

REPOSITORY = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
"""distribution's repository name grammar."""
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")


class PullsError(RegplanError):
    """A pull store that cannot be read or written, or input that is not pulls."""


@attrs.frozen(kw_only=True)
class Pull:
    """A successful ``GET``/``HEAD`` of ``/v2/<repo>/manifests/<reference>``."""

    key: str
    """What makes it this pull and no other (an event's id, a request's id): a second
    import of the same pull is recognised by it."""
    repo: str
    at: float
    """When, epoch seconds (UTC)."""
    digest: str | None = None
    """The manifest pulled: the reference when it is a digest, or what the tag resolved
    to when the source says (notifications do; access logs do not)."""
    tag: str | None = None


def reference(repo: str, ref: str) -> tuple[str | None, str | None] | None:
    """(digest, tag) of a manifest reference; None when ``repo`` or ``ref`` is not one."""
    if not REPOSITORY.fullmatch(repo) or len(repo) > 255:
        return None
    if ":" in ref:
        return (ref, None) if DIGEST.fullmatch(ref) else None
    return (None, ref) if TAG.fullmatch(ref) else None


def manifest_path(path: str) -> tuple[str, str] | None:
    """(repository, reference) of ``/v2/<name>/manifests/<reference>`` (a query
    dropped); None for any other path."""
    path = path.split("?", 1)[0]
    if not path.startswith("/v2/"):
        return None
    name, sep, ref = path[4:].rpartition("/manifests/")
    if not sep or not name or not ref or "/" in ref:
        return None
    return name, ref


_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def parse_time(text: str) -> float | None:
    """RFC 3339 with any fraction (Go writes nanoseconds), as epoch seconds; None if not."""
    m = _TIME.fullmatch(text.strip())
    if m is None:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        whole = datetime.fromisoformat(m.group(1) + zone)
    except ValueError:
        return None
    fraction = float("0" + m.group(2)) if m.group(2) else 0.0
    return whole.timestamp() + fraction


def show_time(ts: float) -> str:
    """A pull time as reviews show it (UTC, to the minute)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
