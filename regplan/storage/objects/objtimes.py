"""The times an object-store move must not change.

On object storage a tag's push time is its ``current/link``'s time (S3's
LastModified, Azure's Last-Modified, GCS's updated), and a blob's or a link's
age (``--gc-min-age``) and a leftover temporary file's
(``--leftovers-older-than``) are their own; no store lets a client set that
time, and a server-side copy is "new". So an apply records the time of every key it moves
(objmoves.py), and a rollback that
copies them back records each restored key with its original time and the
restored object's own etag and time (``restored/<id>/<start>.tsv``).
The scan reads a restored key's time as the original while the object is the
one the rollback wrote (same etag, same time); any write since (a push)
makes it the object's own again. A filesystem keeps times through a rename and
needs none of this.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import attrs

from regplan.scan import tokens
from regplan.storage.objects.bucket import Bucket, Obj, ObjectStorage

SLACK = 1.0
"""Seconds between a copy's reported LastModified and the listing's (S3 rounds to ms or s)."""


def writable(rel: str) -> bool:
    """A key a row of these tab-separated records can hold: no tab or line break (the
    scan keeps such a key, unnamed)."""
    return not any(c in rel for c in "\t\r\n")


def dated(rel: str) -> bool:
    """A key whose LastModified the scan reads as a time (links, blob data, a write's
    leftover temporary files) and that a row can hold."""
    return tokens.dated(rel, rel.rpartition("/")[2], mtimes=True) and writable(rel)


@attrs.frozen
class Restored:
    etag: str
    original: float
    restored: float


def number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def rows(bucket: Bucket, prefix: str) -> Iterable[list[str]]:
    """The tab-separated rows of every file under ``prefix`` (missing files: none)."""
    for o in bucket.objects(prefix):
        try:
            text = bucket.get(prefix + o.rel).decode("utf-8", "replace")
        except FileNotFoundError:
            continue
        for line in text.splitlines():
            yield line.split("\t")


class Overlay:
    """Restored keys' original times, by key relative to ``docker/registry/v2/``."""

    def __init__(self, entries: Mapping[str, Restored] | None = None) -> None:
        self.entries = dict(entries or {})

    @classmethod
    def load(cls, bucket: Bucket, storage: ObjectStorage, *, ages: bool = True) -> Overlay:
        """Every rollback's record (without ``ages``: only of the keys a scan always
        dates, tags' current links and leftovers)."""
        entries: dict[str, Restored] = {}
        for row in rows(bucket, f"{storage.state_prefix}restored/"):
            if len(row) != 4:
                continue
            if not ages and not tokens.dated(row[0], row[0].rpartition("/")[2], mtimes=False):
                continue
            original, restored = number(row[2]), number(row[3])
            if original is not None and restored is not None:
                entries[row[0]] = Restored(row[1], original, restored)
        return cls(entries)

    def time(self, rel: str, o: Obj) -> float:
        """``o``'s time: the original one while it is the object a rollback restored."""
        e = self.entries.get(rel)
        if e is not None and e.etag == o.etag and abs(o.mtime - e.restored) < SLACK:
            return e.original
        return o.mtime


def restored_key(storage: ObjectStorage, apply_id: str, start: int) -> str:
    return f"{storage.state_prefix}restored/{apply_id}/{start:07d}.tsv"


def restored_row(rel: str, etag: str, original: float, restored: float) -> str:
    return f"{rel}\t{etag}\t{original!r}\t{restored!r}\n"
