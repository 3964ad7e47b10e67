"""Sets and maps of digests kept as sorted tuples and arrays (no I/O here).

A repository's revisions and layer links are sets the planner asks ``in`` of and
takes differences of, and there is one of each per repository: as frozensets they
took 6.1 MiB for the 250k bench tree's 106,500 (a hash table at most 60 % full, 16
bytes a slot), as sorted tuples 0.9 MiB (``Digests``). The size of every blob is a
map asked by digest: as a dict, 24 bytes an entry, its index and an int object per
size; as a sorted tuple and an array of sizes, 16 bytes an entry (``Sizes``). A
lookup is a binary search; iteration is in sorted order.
"""

from __future__ import annotations

import array
import bisect
from collections.abc import Iterable, Iterator, Mapping, Set
from typing import Any

from regplan.scan.layout import Digest


class _Sorted:
    """Digests held sorted, without repeats, in ``_keys``: what ``in``, iteration,
    ``len`` and a digest's place (mark.numbers) ask of them (both kinds below)."""

    __slots__ = ("_keys",)
    _keys: tuple[Digest, ...]

    def index(self, value: object) -> int:
        """``value``'s place in sorted order, or -1 when it is not here."""
        if not isinstance(value, str):
            return -1
        i = bisect.bisect_left(self._keys, value)
        return i if i < len(self._keys) and self._keys[i] == value else -1

    def __contains__(self, value: object) -> bool:
        return self.index(value) >= 0

    def key(self, i: int) -> Digest:
        """The digest at place ``i`` in sorted order (IndexError past the end)."""
        return self._keys[i]

    def __iter__(self) -> Iterator[Digest]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class Digests(_Sorted, Set[Digest]):
    """Sorted, without repeats; equal to any set of the same digests. The set
    operations are ``collections.abc.Set``'s, and what they make is a frozenset."""

    __slots__ = ()

    def __init__(self, items: Iterable[Digest] = ()) -> None:
        self._keys = (
            items._keys
            if isinstance(items, Digests)
            else tuple(sorted(items if isinstance(items, (set, frozenset)) else set(items)))
        )

    def __hash__(self) -> int:
        return self._hash()

    def __repr__(self) -> str:
        return f"Digests({list(self._keys)!r})"

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> frozenset[Any]:
        """What ``-``, ``&``, ``|`` and ``^`` make: a frozenset (they are short-lived)."""
        return frozenset(it)


class Sizes(_Sorted, Mapping[Digest, int]):
    """Digest -> size (at least 0), sorted by digest; equal to any mapping of the same."""

    __slots__ = ("_sizes",)
    _sizes: array.array[int]

    def __init__(self, items: Mapping[Digest, int] | Iterable[tuple[Digest, int]] = ()) -> None:
        if isinstance(items, Sizes):
            self._keys, self._sizes = items._keys, items._sizes
            return
        sizes = items if isinstance(items, Mapping) else dict(items)
        keys = sorted(sizes)  # no (key, size) pair per blob: there may be millions
        self._keys = tuple(keys)
        self._sizes = array.array("Q", map(sizes.__getitem__, keys))  # OverflowError: < 0

    def __getitem__(self, key: Digest) -> int:
        i = self.index(key)
        if i < 0:
            raise KeyError(key)
        return self._sizes[i]

    def __repr__(self) -> str:
        return f"Sizes({dict(self.items())!r})"
