"""When each file was written, by path, without holding the paths.

With ``--gc-min-age`` (or a policy's ages) a walk notes the time of every link file and
blob ``data``: a million of them at a million files. As a dict of paths that cost some
215 bytes each (the path's text, 100 characters and more, most of it); as a dict of
128-bit keyed hashes of the paths (BLAKE2b, a key drawn per process: no one can choose
paths that meet) some 110 bytes (an int object, a float object, the dict's slot).
Here the hashes and times sit in three flat arrays, a hash table with open addressing:
32 to 64 bytes an entry (a million-object listing's walk: 136 MiB of RSS for its times
as a dict, 42 MiB so). Only ever asked by path, never listed: the paths are in the
tree.
"""

from __future__ import annotations

import array
import hashlib
import math
import os
import struct
from collections.abc import Iterable, Iterator
from typing import Protocol, overload

_KEY = os.urandom(16)
"""Drawn once per process; a walk's forked shares inherit it (their keys are ours)."""


_KEYED = hashlib.blake2b(digest_size=16, key=_KEY)
"""Copied per path: cheaper than keying a new hash each time."""
_HALVES = struct.Struct("<QQ")


def _key(path: str) -> tuple[int, int]:
    """``path``'s 128-bit keyed hash, in two 64-bit halves, never both 0."""
    h = _KEYED.copy()
    h.update(path.encode("utf-8", "surrogateescape"))
    hi, lo = _HALVES.unpack(h.digest())
    return hi, lo or (0 if hi else 1)


class ByPath(Protocol):
    """What the planner asks of a walk's times (a plain dict of paths answers it too)."""

    def __getitem__(self, path: str, /) -> float: ...

    @overload
    def get(self, path: str, /) -> float | None: ...

    @overload
    def get(self, path: str, default: float, /) -> float: ...


class Times:
    """path -> when (epoch seconds), written by a walk, read by path.

    A path's key is its 128-bit hash, in two halves: slot ``i`` holds ``_hi[i]``,
    ``_lo[i]`` and ``_when[i]``; a slot whose halves are both 0 is free (a key of two
    zero halves is stored as ``(0, 1)``: a 2**-128 chance of meeting another path). A
    key's first slot is its low half's low bits; a taken slot sends it to the next
    (linear probing). A popped key keeps its slot with NaN for its time (so the keys
    after it are still found), and NaN is never a time here. The table doubles when it
    is more than three quarters full: 24 bytes a slot, 32 to 64 an entry.

    A write only appends to a log (three more arrays); the log goes into the table at
    the next read, in order, so a later write wins as in a dict. A walk writes far more
    than it reads while it walks, and joins its units' and shares' times by appending
    their logs to its own: each time is put in a table once."""

    __slots__ = ("_hi", "_live", "_lo", "_log", "_n", "_when")

    def __init__(self) -> None:
        self._new(8)
        self._log = _log()

    def _new(self, size: int) -> None:
        self._hi = array.array("Q", bytes(8 * size))
        self._lo = array.array("Q", bytes(8 * size))
        self._when = array.array("d", bytes(8 * size))
        self._n = 0
        """Slots taken, popped ones included."""
        self._live = 0
        """Keys with a time."""

    def _settle(self) -> None:
        """Put the log's times into the table, in the order they were written."""
        his_, los_, whens_ = self._log
        if not whens_:
            return
        self._log = _log()
        while 4 * (self._n + len(whens_)) > 3 * len(self._lo):
            self._grow()
        self._insert(his_, los_, whens_)

    def _insert(self, his_: Iterable[int], los_: Iterable[int], whens_: Iterable[float]) -> None:
        """Each (hi, lo, when) into the table, which has room for them all: a NaN time
        pops its key; a free slot's (0, 0) is skipped (``_grow`` hands the old slots)."""
        his, los, whens = self._hi, self._lo, self._when
        mask = len(los) - 1
        for hi, lo, when in zip(his_, los_, whens_, strict=True):
            if not (hi or lo):
                continue
            i = lo & mask
            while his[i] != hi or los[i] != lo:
                if his[i] == 0 and los[i] == 0:
                    break
                i = (i + 1) & mask
            else:  # the key is here (with a time, or popped)
                self._live += math.isnan(whens[i]) - math.isnan(when)
                whens[i] = when
                continue
            if not math.isnan(when):  # a new key (no slot for a time it never had)
                his[i], los[i], whens[i] = hi, lo, when
                self._n += 1
                self._live += 1

    def _grow(self) -> None:
        """Twice the slots (a key moves about once on the whole), the old ones read in
        place (no list of them: a million objects at a time); popped keys are left."""
        hi, lo, when = self._hi, self._lo, self._when
        self._new(2 * len(lo))
        self._insert(hi, lo, when)

    def _find(self, path: str) -> int:
        """The slot of ``path``'s time, or -1 when it has none."""
        self._settle()
        hi, lo = _key(path)
        his, los = self._hi, self._lo
        mask = len(los) - 1
        i = lo & mask
        while his[i] != hi or los[i] != lo:
            if his[i] == 0 and los[i] == 0:
                return -1
            i = (i + 1) & mask
        return -1 if math.isnan(self._when[i]) else i

    def __setitem__(self, path: str, when: float) -> None:
        """``path`` was written at ``when``; a NaN is no time: the path is left undated
        (and what the planner cannot date, it keeps)."""
        hi, lo = _key(path)
        his, los, whens = self._log
        his.append(hi)
        los.append(lo)
        whens.append(when)

    def __getitem__(self, path: str, /) -> float:
        i = self._find(path)
        if i < 0:
            raise KeyError(path)
        return self._when[i]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._find(path) >= 0

    def __len__(self) -> int:
        self._settle()
        return self._live

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Times) and other._known() == self._known()

    def _known(self) -> dict[tuple[int, int], float]:
        self._settle()
        return {(hi, lo): w for hi, lo, w in self._times()}

    def _times(self) -> Iterator[tuple[int, int, float]]:
        """The table's keys with a time (not the log's), slot by slot."""
        for hi, lo, when in zip(self._hi, self._lo, self._when, strict=True):
            if (hi or lo) and not math.isnan(when):
                yield hi, lo, when

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dict

    @overload
    def get(self, path: str, /) -> float | None: ...

    @overload
    def get(self, path: str, default: float, /) -> float: ...

    def get(self, path: str, default: float | None = None, /) -> float | None:
        i = self._find(path)
        return default if i < 0 else self._when[i]

    def pop(self, path: str, default: float, /) -> float:
        i = self._find(path)
        if i < 0:
            return default
        when, self._when[i] = self._when[i], math.nan
        self._live -= 1
        return when

    def update(self, other: Times) -> None:
        """``other``'s times over these: a copy of its arrays when this holds none yet
        (an object store's walk, its first unit), else its table's times and then its
        log after this one's log, a time at a time (no list of them), each put in the
        table at the next read."""
        if self._n == 0 and not self._log[2]:
            self._hi, self._lo, self._when = other._hi[:], other._lo[:], other._when[:]
            self._n, self._live = other._n, other._live
            self._log = other._log[0][:], other._log[1][:], other._log[2][:]
            return
        his, los, whens = self._log
        for hi, lo, when in other._times():
            his.append(hi)
            los.append(lo)
            whens.append(when)
        his.extend(other._log[0])
        los.extend(other._log[1])
        whens.extend(other._log[2])

    def __getstate__(self) -> tuple[bytes, bytes, bytes]:
        self._settle()
        return self._hi.tobytes(), self._lo.tobytes(), self._when.tobytes()

    def __setstate__(self, state: tuple[bytes, bytes, bytes]) -> None:
        self._hi, self._lo, self._when = array.array("Q"), array.array("Q"), array.array("d")
        self._hi.frombytes(state[0])
        self._lo.frombytes(state[1])
        self._when.frombytes(state[2])
        self._log = _log()
        self._n = sum(1 for hi, lo in zip(self._hi, self._lo, strict=True) if hi or lo)
        self._live = sum(1 for _ in self._times())


def _log() -> tuple[array.array[int], array.array[int], array.array[float]]:
    """Empty (hi, lo, when) arrays."""
    return array.array("Q"), array.array("Q"), array.array("d")
