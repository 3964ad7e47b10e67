"""The registry's log, line by line (pure): the manifest pulls it records, and the time
span it covers.

distribution logs one ``response completed`` line per request through its formatter
(``log.formatter: json`` or ``text``), with ``http.request.method``, ``.uri``, ``.id``,
``http.response.status`` and ``time``. A pull is a ``GET`` or ``HEAD`` of
``/v2/<name>/manifests/<reference>`` answered 2xx; its key is the request's id (the
same id a notification carries, so a pull both sources report counts once), or for a
line without one its text and how many times the log held it before. Other lines are
skipped and counted (the combined-format access lines the registry writes beside them
too: the formatter's lines already hold those requests).

The span: from the first time to the last, as long as times do not go back (by more
than ``JITTER``) and are not after the import's clock; a line past either is reported
and the span ends before it (its pull, if not in the future, still counts).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import attrs

from regplan.pulls.pull import Pull, manifest_path, parse_time, reference, show_time

JITTER = 5.0
"""Seconds a time may go back (requests finishing out of order) and still be in order."""
AHEAD = 60.0
"""Seconds a time may be after the import's clock (clocks differ a little)."""
SHOWN = 3
"""Reports of each kind kept (the rest are counted)."""

_TEXT_PAIR = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)')
_JSON_TIME = re.compile(rb'"time":"([^"]+)"')
_TEXT_TIME = re.compile(rb'(?:^|\s)time="?([0-9][^"\s]*)')


def _text_fields(line: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in _TEXT_PAIR.findall(line):
        value: Any = raw
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw[1:-1]
        out[key] = value
    return out


def _fields(line: bytes) -> dict[str, Any] | None:
    """The formatter's fields of a line (JSON or text); None when it is neither."""
    text = line.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None
    if text.startswith("time="):
        return _text_fields(text)
    return None


def line_time(line: bytes) -> float | None:
    """The ``time`` of a formatter's line, without reading the rest of it."""
    m = _JSON_TIME.search(line) if line.lstrip().startswith(b"{") else _TEXT_TIME.search(line)
    return None if m is None else parse_time(m.group(1).decode("ascii", "replace"))


def pull_of(fields: dict[str, Any], at: float, key: Callable[[], str]) -> Pull | None:
    """The pull a ``response completed`` line records, if it is one (``key``: the line's
    own key, asked for only when the line has no request id)."""
    if fields.get("msg") != "response completed":
        return None
    if fields.get("http.request.method") not in ("GET", "HEAD"):
        return None
    try:
        status = int(fields.get("http.response.status", 0))
    except (TypeError, ValueError):
        return None
    uri = fields.get("http.request.uri")
    found = manifest_path(uri) if isinstance(uri, str) and 200 <= status < 300 else None
    if found is None:
        return None
    ref = reference(*found)
    if ref is None:
        return None
    request = fields.get("http.request.id")
    named = f"req:{request}" if isinstance(request, str) and request else key()
    return Pull(key=named, repo=found[0], at=at, digest=ref[0], tag=ref[1])


@attrs.define
class Reading:
    """One log read line by line: ``feed`` each line, then ``span`` and ``reports``."""

    source: str
    now: float
    """The import's clock: a later time is in the future."""
    lines: int = 0
    pulls: int = 0
    skipped: int = 0
    """Lines that are not the formatter's (or have no time)."""
    since: float | None = None
    until: float | None = None
    """The end of the span: the last time in order."""
    broken: bool = False
    """Times went back or ahead: the span ended there."""
    reports: list[str] = attrs.Factory(list)
    counts: dict[str, int] = attrs.Factory(dict)
    _seen: dict[bytes, int] = attrs.Factory(dict)
    _last: float | None = None

    def _report(self, kind: str, message: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.counts[kind] <= SHOWN:
            self.reports.append(f"{self.source}:{self.lines}: {message}")

    def feed(self, line: bytes) -> Pull | None:
        """The pull ``line`` records, if any, and its time into the span."""
        self.lines += 1
        at = line_time(line)
        if at is None:
            self.skipped += 1
            return None
        if at > self.now + AHEAD:
            self._report("future", f"time {show_time(at)} is in the future: skipped")
            self.broken = True
            return None
        if self._last is not None and at < self._last - JITTER:
            self._report("backwards", f"time goes back to {show_time(at)}")
            self.broken = True
        self._last = at if self._last is None else max(self._last, at)
        if not self.broken:
            self.since = at if self.since is None else self.since
            self.until = at
        if b"/manifests/" not in line:
            return None
        fields = _fields(line)
        if fields is None:
            self.skipped += 1
            return None
        found = pull_of(fields, at, lambda: self._line_key(line))
        if found is not None:
            self.pulls += 1
        return found

    def _line_key(self, line: bytes) -> str:
        digest = hashlib.sha256(line.rstrip(b"\r\n")).digest()
        n = self._seen.get(digest, 0)
        self._seen[digest] = n + 1
        return f"line:{digest.hex()}:{n}"

    @property
    def span(self) -> tuple[float, float] | None:
        if self.since is None or self.until is None:
            return None
        return self.since, self.until

    def summary(self) -> str:
        extra = "".join(f", {n} {kind}" for kind, n in sorted(self.counts.items()))
        return (
            f"{self.source}: {self.lines} lines, {self.pulls} manifest pulls, "
            f"{self.skipped} other lines skipped{extra}"
        )
