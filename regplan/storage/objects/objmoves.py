"""What an object-store apply moved: each target's keys as listed before any of them was copied.

Before copying a batch, apply writes ``applies/<id>/moves/<start>.tsv``, a row
per key: the slot, the key under the target, its size, content hash (``Obj.content``,
``-`` where the store keeps none) and time (the
original time of a key an earlier rollback restored, objtimes.py). This is the
journal's intent, key by key, and what makes an interrupted run decidable: a key
at a target's place that is in these rows, with the same size and content hash, is the
original (not yet deleted, or restored by a rollback killed before it cleaned
up); anything else there is new (a push since the apply) and stops a rollback.
A run that resumes adds its rows after the earlier run's (what that run deleted
is described by those alone).
"""

from __future__ import annotations

import contextlib

import attrs

from regplan.storage.objects.bucket import Bucket, Exists, Obj
from regplan.storage.objects.objtimes import number, rows

FIELDS = 5


@attrs.frozen
class Moved:
    size: int
    content: str | None
    time: float

    def same(self, o: Obj) -> bool:
        """``o`` is this original: the same size and, where the store keeps a content
        hash of both, the same one (an S3 multipart copy has none, whatever the bytes)."""
        if o.size != self.size:
            return False
        return o.content is None or self.content is None or o.content == self.content


def key(record_prefix: str, start: int) -> str:
    return f"{record_prefix}moves/{start:07d}.tsv"


def row(slot: int, o: Obj, time: float) -> str:
    """One key's row (``objtimes.writable`` keys only: apply refuses a target holding another)."""
    return f"{slot}\t{o.rel}\t{o.size}\t{o.content or '-'}\t{time!r}\n"


def load(bucket: Bucket, record_prefix: str) -> dict[int, dict[str, Moved]]:
    """slot -> key under the target -> what it was, as the apply recorded."""
    out: dict[int, dict[str, Moved]] = {}
    for r in rows(bucket, f"{record_prefix}moves/"):
        if len(r) != FIELDS or not r[0].isdigit() or not r[2].isdigit():
            continue
        t = number(r[4])
        if t is not None:
            content = None if "-" in r[3] else r[3]  # "-": none; an S3 multipart ETag
            out.setdefault(int(r[0]), {})[r[1]] = Moved(int(r[2]), content, t)
    return out


def append(bucket: Bucket, key: str, text: str) -> None:
    """Add rows after those an interrupted run wrote at ``key``: one request where there
    are none (a conditional create), a read and a write where there are."""
    if not text:
        return
    with contextlib.suppress(Exists):
        bucket.put(key, text.encode(), new=True)
        return
    with contextlib.suppress(FileNotFoundError):
        text = bucket.get(key).decode("utf-8", "replace") + text
    bucket.put(key, text.encode())
