"""The frozen model of what a scan found. No I/O here."""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterator, Mapping

import attrs

from regplan.layout import Digest, group_by_part
from regplan.manifests import Manifest


class ProblemCode(enum.Enum):
    EMPTY_LINK = "empty-link"
    CORRUPT_LINK = "corrupt-link"
    LINK_MISMATCH = "link-mismatch"
    MISSING_LINK = "missing-link"
    MISSING_BLOB = "missing-blob"
    UNREADABLE_MANIFEST = "unreadable-manifest"
    MISSING_CHILD = "missing-child"
    UNKNOWN_TAG_TARGET = "unknown-tag-target"
    SYMLINK = "symlink"
    UNREADABLE = "unreadable"


@attrs.frozen(kw_only=True, order=True)
class Problem:
    """Something wrong in the storage. The planner keeps what a problem touches."""

    path: str
    code: ProblemCode
    message: str


@attrs.frozen(kw_only=True)
class Tag:
    name: str
    current: Digest | None
    """What ``current/link`` names; None when that link is missing or corrupt."""
    history: frozenset[Digest] = frozenset()
    pushed_at: float = 0.0
    """mtime of ``current/link``: when the tag was last pushed."""


@attrs.frozen(kw_only=True)
class Upload:
    uuid: str
    started_at: str | None


@attrs.frozen(kw_only=True)
class Repository:
    name: str
    tags: Mapping[str, Tag] = attrs.field(factory=dict)
    revisions: frozenset[Digest] = frozenset()
    layers: frozenset[Digest] = frozenset()
    uploads: Mapping[str, Upload] = attrs.field(factory=dict)
    damaged: tuple[str, ...] = ()
    """Link files here that are present but empty, corrupt or naming another digest."""


class Tree:
    """Every path under ``docker/registry/v2`` with its fingerprint token.

    Tokens: ``d`` directory, ``l<content>`` link file, ``f<size>`` other file,
    ``s<target>`` symlink (never followed).
    """

    __slots__ = ("_sorted", "entries", "groups")

    def __init__(
        self, entries: Mapping[str, str], groups: Mapping[str, list[str]] | None = None
    ) -> None:
        self.entries = entries
        self.groups: Mapping[str, list[str]] = (
            groups if groups is not None else group_by_part(entries)
        )
        self._sorted: list[str] | None = None

    @property
    def _paths(self) -> list[str]:
        """All paths sorted, built on first use (only subtree needs it)."""
        if self._sorted is None:
            self._sorted = sorted(self.entries)
        return self._sorted

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, path: str) -> bool:
        return path in self.entries

    def subtree(self, path: str) -> Iterator[str]:
        """``path`` itself (when present) and every path below it."""
        if path in self.entries:
            yield path
        prefix = path + "/"
        i = bisect.bisect_left(self._paths, prefix)
        while i < len(self._paths) and self._paths[i].startswith(prefix):
            yield self._paths[i]
            i += 1

    def size(self, path: str) -> int:
        token = self.entries.get(path, "d")
        if token[0] == "f":
            return int(token[1:])
        if token[0] == "l":
            return len(token) - 1
        return 0

    def bytes_under(self, path: str) -> int:
        return sum(self.size(p) for p in self.subtree(path))

    def directories(self) -> Iterator[str]:
        return (p for p, t in self.entries.items() if t == "d")


@attrs.frozen(kw_only=True)
class Inventory:
    repositories: Mapping[str, Repository]
    blobs: Mapping[Digest, int]
    """Blob digest -> size of its ``data``."""
    manifests: Mapping[Digest, Manifest]
    """Every digest a revision or tag names, parsed once (unreadable ones say why)."""
    problems: tuple[Problem, ...]
    tree: Tree = attrs.field(eq=False)
    mtimes: Mapping[str, float] = attrs.field(factory=dict, eq=False)
    """mtime of blob ``data`` files and (when scanned with mtimes) link files, by path."""
    created: Mapping[Digest, str] = attrs.field(factory=dict)
    """Image config ``created`` of tagged manifests (only when scanned with created=True)."""
