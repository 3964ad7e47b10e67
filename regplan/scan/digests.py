"""An immutable set of digests kept as one sorted tuple (no I/O here).

A repository's revisions and layer links are sets the planner asks ``in`` of and
takes differences of, and there is one of each per repository: as frozensets they
took 6.1 MiB for the 250k bench tree's 106,500 (a hash table at most 60 % full, 16
bytes a slot), as sorted tuples 0.9 MiB. A lookup is a binary search; the set
operations are ``collections.abc.Set``'s, and what they make is a frozenset.
Iteration is in sorted order.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Set
from typing import Any

from regplan.scan.layout import Digest


class Digests(Set[Digest]):
    """Sorted, without repeats; equal to any set of the same digests."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Digest] = ()) -> None:
        self._items: tuple[Digest, ...] = (
            items._items if isinstance(items, Digests) else tuple(sorted(set(items)))
        )

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        i = bisect.bisect_left(self._items, value)
        return i < len(self._items) and self._items[i] == value

    def __iter__(self) -> Iterator[Digest]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash()

    def __repr__(self) -> str:
        return f"Digests({list(self._items)!r})"

    def __getstate__(self) -> tuple[Digest, ...]:
        return self._items

    def __setstate__(self, state: tuple[Digest, ...]) -> None:
        self._items = state

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> frozenset[Any]:
        """What ``-``, ``&``, ``|`` and ``^`` make: a frozenset (they are short-lived)."""
        return frozenset(it)
