"""Every path of the registry tree with its fingerprint token, held compactly.

A registry of a million files has over two million paths; as a dict of
strings they cost about 650 bytes each. Here each fingerprint part (a
repository, a blob shard, a top folder: see layout.part_of) keeps its lines
``path NUL token LF``, sorted, as one zlib-compressed block: the very bytes its
digest is computed over (fingerprint.part_bytes). A part is decompressed only
when something asks about a path in it, and the last one is cached, so callers
that ask part by part decompress each part once.

The tokens are the walk's (tokens.py).
"""

from __future__ import annotations

import bisect
import os
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, TypeAlias

import attrs

from regplan import scratch
from regplan.scan import fingerprint, tokens
from regplan.scan.layout import group_by_part, part_of
from regplan.scan.tokens import Event

_LEVEL = 1
"""zlib level: 1 is fast and still packs the lines of a 589,271-path tree into 12 MiB."""
STORE_MIN = 1 << 20
"""Blocks of a tree past this many bytes wait in a temporary file, not in memory."""


@attrs.frozen
class _Span:
    """Where a part's block lies in the tree's temporary file."""

    offset: int
    length: int


Block: TypeAlias = bytes | tuple[str, ...] | _Span
"""A part's lines: compressed, as they are (see TreeBuilder.close), or in the file."""


@attrs.frozen
class Parts:
    """What a TreeBuilder collected: per part its block and digest (picklable, so a
    forked share of the walk can send it back)."""

    blocks: dict[str, bytes | tuple[str, ...]]
    digests: dict[str, str]
    count: int


class Tree:
    """Read-only: the paths and tokens of one walk, and that walk's digest."""

    __slots__ = ("_blocks", "_cache", "_file", "_names", "digest")

    def __init__(self, blocks: Mapping[str, Block], digest: fingerprint.TreeDigest) -> None:
        self._blocks = blocks
        self._names = sorted(blocks)
        self._cache: tuple[str, list[str]] = ("", [])
        self._file: IO[bytes] | None = None
        self.digest = digest

    @classmethod
    def join(cls, shares: Iterable[Parts]) -> Tree:
        """One tree from the disjoint shares of a walk. Past STORE_MIN bytes of blocks
        (a million files make 48 MiB) they go to an unnamed temporary file, read back
        a part at a time: the plan's peak is not the tree's."""
        blocks: dict[str, Block] = {}
        digests: dict[str, str] = {}
        count = 0
        for share in shares:
            blocks.update(share.blocks)
            digests.update(share.digests)
            count += share.count
        tree = cls(blocks, fingerprint.TreeDigest.of_parts(digests, count))
        if sum(len(b) for b in blocks.values() if isinstance(b, bytes)) > STORE_MIN:
            tree._store(blocks)
        return tree

    def _store(self, blocks: dict[str, Block]) -> None:
        """Each compressed block into one scratch file, in its place a span of it."""

        def moved() -> Iterator[bytes]:
            at = 0
            for part, block in blocks.items():
                if isinstance(block, bytes):
                    blocks[part] = _Span(at, len(block))  # a value, not a key: iteration holds
                    at += len(block)
                    yield block

        self._file = scratch.write(moved(), "the tree's index")

    @classmethod
    def from_entries(cls, entries: Mapping[str, str]) -> Tree:
        """Build from ``{path: token}`` (tests and small tools; the scan builds it as it walks)."""
        builder = TreeBuilder()
        for part, paths in group_by_part(entries).items():
            lines = builder.open(part)
            lines.extend(fingerprint.line(p, entries[p]) for p in paths)
            builder.close(part)
        return builder.finish()

    def __len__(self) -> int:
        return self.digest.entries

    def lines(self, part: str) -> list[str]:
        """The part's ``path NUL token`` lines, sorted by path (empty for an unknown part)."""
        if self._cache[0] == part:
            return self._cache[1]
        block = self._blocks.get(part)
        if block is None:
            return []
        if isinstance(block, tuple):  # a part whose lines cannot be joined unambiguously
            lines = [line[:-1] for line in block]
        else:
            if isinstance(block, _Span):
                if self._file is None:
                    raise AssertionError("a stored block without its file")
                block = os.pread(self._file.fileno(), block.length, block.offset)
            lines = zlib.decompress(block).decode("utf-8", "surrogateescape").split("\n")
            lines.pop()  # after the last LF
        self._cache = (part, lines)
        return lines

    def _parts_below(self, path: str) -> list[str]:
        """The parts that hold ``path`` or anything below it (nested repositories are
        parts of their own, inside their parent's folder)."""
        names = [part_of(path)]
        prefix = path + "/"
        i = bisect.bisect_left(self._names, prefix)
        while i < len(self._names) and self._names[i].startswith(prefix):
            if self._names[i] != names[0]:
                names.append(self._names[i])
            i += 1
        return names

    @staticmethod
    def _own(lines: list[str], path: str) -> int | None:
        """The index of ``path``'s own line in the sorted ``lines``, or None."""
        i = bisect.bisect_left(lines, path + "\0")
        if i < len(lines) and lines[i].startswith(path + "\0"):
            return i
        return None

    def _ranges(self, lines: list[str], path: str) -> Iterator[tuple[int, int]]:
        """Index ranges of ``lines`` holding ``path`` itself and the paths below it."""
        i = self._own(lines, path)
        if i is not None:
            yield i, i + 1
        prefix = path + "/"
        j = k = bisect.bisect_left(lines, prefix)
        while k < len(lines) and lines[k].startswith(prefix):
            k += 1
        if k > j:
            yield j, k

    def _lines_under(self, path: str) -> Iterator[str]:
        for part in self._parts_below(path):
            lines = self.lines(part)
            for start, end in self._ranges(lines, path):
                yield from lines[start:end]

    def lines_under(self, path: str) -> Iterator[str]:
        """The ``path NUL token`` lines of ``path`` and of every path below it."""
        return self._lines_under(path)

    def token(self, path: str) -> str | None:
        lines = self.lines(part_of(path))
        i = self._own(lines, path)
        return None if i is None else lines[i][len(path) + 1 :]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.token(path) is not None

    def subtree(self, path: str) -> Iterator[str]:
        """``path`` itself (when present) and every path below it."""
        for line in self._lines_under(path):
            yield line.split("\0", 1)[0]

    def bytes_under(self, path: str) -> int:
        """Bytes of the files at and below ``path`` (link contents, file sizes)."""
        total = 0
        for line in self._lines_under(path):
            total += tokens.bytes_of(line.split("\0", 1)[1])
        return total

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (path, token), part by part."""
        for part in self._names:
            for line in self.lines(part):
                path, token = line.split("\0", 1)
                yield path, token

    def emptied(self, paths: Iterable[str]) -> list[str]:
        """The folders that hold nothing once ``paths`` and all below them are gone.

        Object storage has no folders of its own: a folder is there while a key
        lies below it, so these go with the targets (a filesystem keeps them).
        Only the targets' ancestors can empty; each is read until the first path
        that stays.
        """
        gone = set(paths)

        def removed(path: str) -> bool:
            while path:
                if path in gone:
                    return True
                path = path.rpartition("/")[0]
            return False

        candidates: set[str] = set()
        for path in gone:
            parent = path.rpartition("/")[0]
            while parent and parent not in candidates:
                candidates.add(parent)
                parent = parent.rpartition("/")[0]
        alive: set[str] = set()
        dead: set[str] = set()
        for folder in sorted(candidates, key=lambda d: (-d.count("/"), d)):  # deepest first
            if folder in alive or removed(folder):
                continue
            below = (p for p in self.subtree(folder) if p != folder)
            if any(p not in dead and not removed(p) for p in below):
                parent = folder
                while parent and parent not in alive:
                    alive.add(parent)
                    parent = parent.rpartition("/")[0]
            else:
                dead.add(folder)
        return sorted(dead)

    def without(self, paths: Iterable[str]) -> fingerprint.TreeDigest:
        """The digest of this tree once every path in ``paths`` and below is gone.

        ``paths`` come in the order of their parts (``layout.part_of``; in any
        order within one): each part is digested again as soon as the paths
        reach the next part, so only one part's paths are held at a time (a
        folder's nested repositories are later parts, held until their turn).
        """
        parts = dict(self.digest.parts)
        pending: dict[str, list[str]] = {}
        removed = 0
        current = ""
        for path in paths:
            part = part_of(path)
            if part < current:
                raise ValueError(f"paths out of part order: {part} after {current}")
            if part != current:
                current = part
                for done in sorted(p for p in pending if p < part):
                    removed += self._drop(parts, done, pending.pop(done))
            for below in self._parts_below(path):
                pending.setdefault(below, []).append(path)
        for done in sorted(pending):
            removed += self._drop(parts, done, pending[done])
        return fingerprint.TreeDigest.of_parts(parts, len(self) - removed)

    def _drop(self, parts: dict[str, str], part: str, paths: list[str]) -> int:
        """Digest ``part`` again without ``paths`` and below (into ``parts``); the
        count of its lines that went."""
        lines = self.lines(part)
        gone = sorted({r for path in paths for r in self._ranges(lines, path)})
        keep: list[str] = []
        at = 0
        removed = 0
        for start, end in gone:
            if start >= at:
                keep.extend(lines[at:start])
                removed += end - start
            elif end > at:  # overlaps a range already dropped
                removed += end - at
            at = max(at, end)
        keep.extend(lines[at:])
        if keep:
            parts[part] = fingerprint.part_digest(
                ("\n".join(keep) + "\n").encode("utf-8", "surrogateescape")
            )
        else:
            parts.pop(part, None)
        return removed


class TreeBuilder:
    """Collects a walk's lines part by part: each part is digested, compressed (with
    ``keep``) and its lines dropped as soon as it is closed."""

    def __init__(self, *, keep: bool = True) -> None:
        self._keep = keep
        self._open: dict[str, list[str]] = {}
        self._blocks: dict[str, bytes | tuple[str, ...]] = {}
        self._digests: dict[str, str] = {}
        self._count = 0

    def open(self, part: str) -> list[str]:
        """The list to append ``fingerprint.line(path, token)`` lines of ``part`` to."""
        lines = self._open.get(part)
        if lines is None:
            if part in self._digests:
                raise AssertionError(f"part {part} reopened after it was closed")
            lines = self._open[part] = []
        return lines

    def take(self, events: Iterable[Event]) -> Iterator[Event]:
        """Put a walk's events in, closing each part at its end event; pass every
        path's event on (for a consumer that also classifies them)."""
        last, lines = "", []
        for event in events:
            rel, token, part = event
            if not token:
                self.close(part)
                last = ""
                continue
            if part is not last:  # a part's events mostly come together, as one object
                last, lines = part, self.open(part)
            lines.append(f"{rel}\0{token}\n")  # fingerprint.line, inlined: the hot loop
            yield event

    def close(self, part: str) -> None:
        lines = self._open.pop(part, None)
        if not lines:
            return
        data = fingerprint.part_bytes(lines)
        self._digests[part] = fingerprint.part_digest(data)
        self._count += len(lines)
        if not self._keep:
            return
        if data.count(b"\n") == len(lines) == data.count(b"\0"):
            self._blocks[part] = zlib.compress(data, _LEVEL)
        else:  # a newline in a path or a NUL/newline in a link: keep the lines as they are
            self._blocks[part] = tuple(lines)

    def parts(self) -> Parts:
        for part in list(self._open):
            self.close(part)
        return Parts(blocks=self._blocks, digests=self._digests, count=self._count)

    def finish(self) -> Tree:
        return Tree.join([self.parts()])


def digest_events(events: Iterable[Event]) -> fingerprint.TreeDigest:
    """The digest of a depth-first walk's events, holding one part's lines at a time."""
    builder = TreeBuilder(keep=False)
    for _ in builder.take(events):
        pass
    return builder.finish().digest
