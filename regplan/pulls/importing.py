"""``pulls import``: registry logs (files, gzip'd or not, or stdin) into a pull store.

Each log is read line by line (``accesslog.Reading``) and its pulls recorded a batch at
a time; its span is recorded with the last batch, so a log whose import was cut short
adds pulls but no coverage (importing it again completes it, counting nothing twice).
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from regplan.pulls.accesslog import Reading
from regplan.pulls.pull import Pull, PullsError
from regplan.pulls.store import BATCH, Store

STDIN = "-"


@contextmanager
def _lines(name: str) -> Iterator[BinaryIO]:
    """The log's bytes: stdin for ``-``, a gzip'd file unpacked (by its magic bytes)."""
    if name == STDIN:
        raw: BinaryIO = sys.stdin.buffer
        closing = False
    else:
        try:
            raw = Path(name).open("rb")  # noqa: SIM115 (closed below)
        except OSError as e:
            raise PullsError(f"{name}: {e.strerror}") from None
        closing = True
    try:
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
        if buffered.peek(2)[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=buffered) as unpacked:
                yield unpacked  # type: ignore[misc]
        else:
            yield buffered
    finally:
        if closing:
            raw.close()


def import_log(store: Store, name: str, now: float) -> Reading:
    """One log into ``store``; what was read (``Reading.summary``, ``reports``)."""
    reading = Reading(source="stdin" if name == STDIN else name, now=now)
    batch: list[Pull] = []
    try:
        with _lines(name) as lines:
            for line in lines:
                found = reading.feed(line)
                if found is not None:
                    batch.append(found)
                    if len(batch) >= BATCH:
                        store.add(batch)
                        batch = []
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise PullsError(f"{reading.source}: cannot read ({e})") from None
    span = reading.span
    store.add(batch, None if span is None else (f"log:{reading.source}", *span))
    return reading


def import_logs(db: Path, names: Sequence[str], now: float) -> list[Reading]:
    """Every log of ``names`` into the store at ``db`` (made when there is none)."""
    with Store.open(db, create=True) as store:
        return [import_log(store, name, now) for name in names]
