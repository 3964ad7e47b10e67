"""Tree digests: the tree a plan was made against, and the tree it must leave.

The digest covers metadata only (every path, every link's content, each file's
size, symlink targets), never blob contents: one walk, no layer data read.
The tree is cut into *parts* (a repository, a blob shard ``blobs/sha256/ab``,
a top folder) so a stale plan can say what changed. Each part's digest is
SHA-256 over its sorted lines; the tree digest is SHA-256 over the sorted
``part digest`` lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import attrs

from regplan.scan.layout import printable

ALGORITHM = "regplan-tree-sha256-v1"


@attrs.frozen(kw_only=True)
class TreeDigest:
    digest: str
    entries: int
    parts: Mapping[str, str]

    def named_parts(self) -> dict[str, str]:
        """The part digests by printable name, sorted, as a plan records them (a folder
        name that is not UTF-8 is escaped; the tree digest itself covers the raw bytes)."""
        return {printable(name): self.parts[name] for name in sorted(self.parts)}

    @classmethod
    def of_parts(cls, parts: Mapping[str, str], entries: int) -> TreeDigest:
        return cls(digest=_combine(parts), entries=entries, parts=parts)

    @classmethod
    def join(cls, shares: Iterable[TreeDigest]) -> TreeDigest:
        """The digest of a tree walked in disjoint shares (no part spans two)."""
        parts: dict[str, str] = {}
        entries = 0
        for share in shares:
            parts.update(share.parts)
            entries += share.entries
        return cls.of_parts(parts, entries)


def line(path: str, token: str) -> str:
    """A path's line; a part's lines, sorted, are what its digest covers."""
    return f"{path}\0{token}\n"


def part_bytes(lines: list[str]) -> bytes:
    """Sort a part's lines (in place) and return the bytes its digest is over."""
    lines.sort()
    return "".join(lines).encode("utf-8", "surrogateescape")


def part_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _combine(parts: Mapping[str, str]) -> str:
    h = hashlib.sha256(ALGORITHM.encode())
    for name in sorted(parts):
        h.update(f"{name}\0{parts[name]}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def changed_parts(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """Human lines naming each part that differs, sorted."""
    out = []
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            out.append(f"{name} (gone)")
        elif name not in expected:
            out.append(f"{name} (new)")
        elif expected[name] != actual[name]:
            out.append(f"{name} (changed)")
    return out


def describe_changes(changed: Sequence[str], limit: int = 10) -> str:
    """Repositories (and other folders) by name first, blob shards by count."""
    shards = [c for c in changed if c.startswith("blobs/")]
    named = [c for c in changed if not c.startswith("blobs/")]
    text = ", ".join(named[:limit])
    if len(named) > limit:
        text += f" and {len(named) - limit} more"
    if shards:
        text += ("; " if text else "") + f"{len(shards)} blob shard(s) ({shards[0]}"
        text += ", …)" if len(shards) > 1 else ")"
    return text
