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
from collections.abc import Iterable, Mapping

import attrs

from regplan.layout import group_by_part, part_of

ALGORITHM = "regplan-tree-sha256-v1"


@attrs.frozen(kw_only=True)
class TreeDigest:
    digest: str
    entries: int
    parts: Mapping[str, str]


def _part_digest(lines: list[str]) -> str:
    lines.sort()
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _combine(parts: Mapping[str, str]) -> str:
    h = hashlib.sha256(ALGORITHM.encode())
    for name in sorted(parts):
        h.update(f"{name}\0{parts[name]}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _line(path: str, token: str) -> str:
    return f"{path}\0{token}\n"


def digest_entries(
    entries: Mapping[str, str], groups: Mapping[str, list[str]] | None = None
) -> TreeDigest:
    """Digest a tree given as ``{rel path: token}`` (``groups``: its paths by part)."""
    if groups is None:
        groups = group_by_part(entries)
    parts = {
        name: _part_digest([_line(p, entries[p]) for p in paths])
        for name, paths in groups.items()
        if paths
    }
    return TreeDigest(digest=_combine(parts), entries=len(entries), parts=parts)


def predict_after(
    entries: Mapping[str, str],
    before: TreeDigest,
    removed: Iterable[str],
    groups: Mapping[str, list[str]] | None = None,
) -> TreeDigest:
    """The digest of the tree once every path in ``removed`` is gone.

    Only the parts that lose a path are recomputed.
    """
    removed = set(removed)
    if groups is None:
        groups = group_by_part(entries)
    parts = dict(before.parts)
    for name in {part_of(p) for p in removed}:
        lines = [_line(p, entries[p]) for p in groups[name] if p not in removed]
        if lines:
            parts[name] = _part_digest(lines)
        else:
            del parts[name]
    return TreeDigest(digest=_combine(parts), entries=before.entries - len(removed), parts=parts)


def digest_events(events: Iterable[tuple[str, str, str]]) -> TreeDigest:
    """Digest a tree from a depth-first walk's events without holding all of it:
    each part's lines are hashed, and dropped, as soon as its end event comes
    (``(rel, token, part)``; an empty token ends ``part``)."""
    open_parts: dict[str, list[str]] = {}
    parts: dict[str, str] = {}
    count = 0
    for rel, token, part in events:
        if not token:
            lines = open_parts.pop(part, None)
            if lines:
                parts[part] = _part_digest(lines)
            continue
        if part in parts:
            raise AssertionError(f"{rel} came after its part {part} ended")
        count += 1
        open_parts.setdefault(part, []).append(_line(rel, token))
    for part, lines in open_parts.items():
        parts[part] = _part_digest(lines)
    return TreeDigest(digest=_combine(parts), entries=count, parts=parts)


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
