"""Digests as the mark's numbers, and back (no I/O here).

The mark's tables hold a number for each digest, never the digest (4 bytes a cell).
The numbers are given here, in Python, before the rows reach the database: the
blobs' digests, which the inventory already holds sorted (``scan.digests.Sizes``),
are numbered by their place in that order, found by binary search; a digest that
names no blob (a manifest's missing layer, a revision whose blob is gone) is
numbered after them, in the order first asked. So the database needs no table of
digests, no join to number a row as it loads, and none to name a digest in an
answer: a number comes back as the digest object the inventory holds.

Numbering the 250k bench tree's tables in SQL (a table of every digest as a BLOB, a
hash join per digest column at each load, one more per answer) left the loaded
database 68 MiB over the inventory, for tables of 9 MiB; numbered here, 39 MiB for
tables of 4.3 MiB (docs/scale.md).
"""

from __future__ import annotations

from regplan.scan.digests import Sizes
from regplan.scan.layout import Digest


class Numbering:
    """Digest <-> number for one mark: the blobs' by their sorted place, any other
    after them. Equal digests (equal text) get the same number, distinct ones
    distinct numbers."""

    __slots__ = ("_blobs", "_numbers", "_others")

    def __init__(self, blobs: Sizes) -> None:
        self._blobs = blobs
        self._others: list[Digest] = []
        self._numbers: dict[Digest, int] = {}
        """Numbers of the digests that name no blob (few: a damaged registry's)."""

    def number(self, digest: Digest) -> int:
        i = self._blobs.index(digest)
        if i >= 0:
            return i
        found = self._numbers.get(digest)
        if found is None:
            found = self._numbers[digest] = len(self._blobs) + len(self._others)
            self._others.append(digest)
        return found

    def digest(self, number: int) -> Digest:
        """The digest ``number`` was given for; IndexError for one never given."""
        if number < 0:
            raise IndexError(number)
        n = len(self._blobs)
        return self._blobs.key(number) if number < n else self._others[number - n]
