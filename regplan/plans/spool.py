"""Records sorted past memory: what grows with a plan waits on local disk, not in objects.

Half a million targets held as Python objects took some 200 MiB. A
:class:`Sorted` keeps at most ``run`` records in memory; each full buffer is
sorted and written to an unnamed temporary file (a run), and iteration merges
the runs (``heapq.merge``), so memory stays flat whatever the count. A plan of
a few thousand targets never touches the disk.

Runs are written with ``marshal``, in chunks of ``CHUNK`` records, and read
back with ``os.pread``: a record is plain data (reading one runs no code), and
any number of passes may read the same runs.

:class:`TargetSpool` is what the planner decides into: each target once in the
plan's order (removal phase, path) and once in the order of the tree's parts
(what the predicted fingerprint reads part by part). Where a path was decided
twice, the last decision holds, as in a dict.
"""

from __future__ import annotations

import heapq
import marshal
import os
import struct
from collections.abc import Iterator
from typing import IO, Any

from regplan import scratch
from regplan.plans.plan import Target, TargetKind
from regplan.scan.layout import part_of

RUN = 4096
"""Records held in memory before a sorted run goes to disk (a target is some 400 bytes)."""
CHUNK = 256
"""Records per marshal chunk in a run: what one reader of a run holds at a time (a
million-file plan merges some 130 runs, after the inventory is dropped)."""

_LENGTH = struct.Struct("<Q")

Record = tuple[Any, ...]


class Sorted:
    """Tuples added in any order, read back sorted; runs spill to ``scratch`` files."""

    def __init__(self, run: int | None = None) -> None:
        self._run = run or RUN
        self._buffer: list[Record] = []
        self._runs: list[tuple[IO[bytes], int]] = []
        self.count = 0

    def add(self, record: Record) -> None:
        self._buffer.append(record)
        self.count += 1
        if len(self._buffer) >= self._run:
            self._spill()

    def __iter__(self) -> Iterator[Record]:
        """Every record, sorted. Do not add while iterating."""
        self._buffer.sort()
        if not self._runs:
            return iter(self._buffer)
        return heapq.merge(*(_read(f, size) for f, size in self._runs), self._buffer)

    def close(self) -> None:
        for f, _ in self._runs:
            f.close()
        self._runs.clear()
        self._buffer.clear()

    def _spill(self) -> None:
        self._buffer.sort()
        f = scratch.write(_chunks(self._buffer), "the plan's targets")
        self._runs.append((f, f.tell()))  # written to its end: its size
        self._buffer = []


def _chunks(records: list[Record]) -> Iterator[bytes]:
    for start in range(0, len(records), CHUNK):
        data = marshal.dumps(records[start : start + CHUNK])
        yield _LENGTH.pack(len(data)) + data


def _read(f: IO[bytes], size: int) -> Iterator[Record]:
    fd = f.fileno()
    at = 0
    while at < size:
        (length,) = _LENGTH.unpack(os.pread(fd, _LENGTH.size, at))
        at += _LENGTH.size
        yield from marshal.loads(os.pread(fd, length, at))  # noqa: S302 (our own unnamed file)
        at += length


class TargetSpool:
    """The targets of a plan as the planner decides them (sized when decided)."""

    def __init__(self, run: int | None = None) -> None:
        self._order = Sorted(run)
        self._parts = Sorted(run)

    def add(self, target: Target) -> None:
        """``target`` is validated by its construction; only its fields are kept."""
        t = target
        self._order.add(
            (t.kind.phase, t.path, self._order.count, t.kind.value, t.reason, t.refs, t.bytes)
        )
        self._parts.add((part_of(t.path), t.path))

    def _records(self) -> Iterator[Record]:
        """Plan order; of one path decided twice, the later decision."""
        last: Record | None = None
        for record in self._order:
            if last is not None and record[1] != last[1]:
                yield last
            last = record
        if last is not None:
            yield last

    def targets(self) -> Iterator[Target]:
        for _, path, _, kind, reason, refs, size in self._records():
            yield Target(path=path, kind=TargetKind(kind), reason=reason, refs=refs, bytes=size)

    def raw(self) -> Iterator[dict[str, Any]]:
        """Each target as the plan file holds it (``codec.unstructure`` of it), built
        without structuring it again: it was checked when it was added."""
        for _, path, _, kind, reason, refs, size in self._records():
            yield {"path": path, "kind": kind, "reason": reason, "refs": list(refs), "bytes": size}

    def image_targets(self) -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
        """(kind, path, reason, refs) of the targets that are images (repositories, tags,
        revisions): they come first in plan order, so the pass stops where they end."""
        last = TargetKind.REVISION.phase
        for phase, path, _, kind, reason, refs, _ in self._records():
            if phase > last:
                return
            if kind != TargetKind.TAG_INDEX.value:
                yield kind, path, reason, refs

    def plan_paths(self) -> Iterator[str]:
        """Each target's path, in plan order (``targets``' paths, no target built)."""
        for record in self._records():
            yield record[1]

    def kinds_and_bytes(self) -> Iterator[tuple[str, int]]:
        """(kind, bytes) of each target, in plan order: what ``plan.tally`` sums."""
        for _, _, _, kind, _, _, size in self._records():
            yield kind, size

    def paths(self) -> Iterator[str]:
        """Every target's path (a path decided twice, twice), ordered by the tree's parts."""
        for _, path in self._parts:
            yield path

    def close(self) -> None:
        self._order.close()
        self._parts.close()
