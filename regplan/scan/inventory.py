"""The frozen model of what a scan found. No I/O here."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from regplan.scan.digests import Digests, Sizes
from regplan.scan.layout import Digest, attached_subject
from regplan.scan.manifests import Manifest
from regplan.scan.times import ByPath, Times
from regplan.scan.tree import Tree


class ProblemCode(enum.StrEnum):
    """Stable names, written to plans; ordered by name (two problems of one path sort)."""

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
    SPECIAL_FILE = "special-file"
    UNNAMEABLE = "unnameable"
    UNKNOWN_FOLDER = "unknown-folder"
    UNKNOWN_ENTRY = "unknown-entry"
    LEFTOVER_TEMP = "leftover-temp-file"
    ABSENT_CHILD = "absent-child"
    SCHEMA1_ON_V3 = "schema1-on-v3"
    PULLS_UNCOVERED = "pulls-uncovered"


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
    history: tuple[Digest, ...] = ()
    """Every revision ever pushed under it (``index/``), sorted: a tuple, since a
    frozenset of one is 216 bytes and there is one per tag."""
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
    revisions: Digests = attrs.field(factory=Digests, converter=Digests)
    layers: Digests = attrs.field(factory=Digests, converter=Digests)
    """Both sorted tuples with a set's interface (scan.digests): one per repository."""
    uploads: Mapping[str, Upload] = attrs.field(factory=dict)
    damaged: tuple[str, ...] = ()
    """Link files here that are present but empty, corrupt or naming another digest."""
    unknown: tuple[str, ...] = ()
    """Entries here that distribution does not keep (scan.entries): the repository fails
    closed."""


@attrs.frozen(kw_only=True)
class Inventory:
    repositories: Mapping[str, Repository]
    blobs: Sizes = attrs.field(converter=Sizes)
    """Blob digest -> size of its ``data`` (sorted: scan.digests)."""
    manifests: Mapping[Digest, Manifest]
    """Every digest a revision or tag names, parsed once (unreadable ones say why)."""
    problems: tuple[Problem, ...]
    tree: Tree = attrs.field(eq=False)
    mtimes: ByPath = attrs.field(factory=Times, eq=False)
    """Only when scanned with mtimes: mtime of every link file and blob ``data``, by path
    (and always of tags' ``current/link``, as ``Tag.pushed_at``)."""
    created: Mapping[Digest, str] = attrs.field(factory=dict)
    """Image config ``created`` of tagged manifests (only when scanned with created=True)."""
    blind: tuple[str, ...] = ()
    """Paths the walk could not see into: folders it could not list, symlinks, FIFOs
    and other special files, names a plan cannot hold. Sorted. What might be
    referenced from there is kept (planner: fail closed)."""


def subject_of(inv: Inventory, repo: Repository, tag: str) -> Digest | None:
    """The image a tag is attached to, or None for an image's own tag: by its name (a
    cosign ``sha256-<hex>.sig``, a referrers fallback tag), or, whatever it is called,
    by its manifest's ``subject`` (an SBOM or signature pushed by tag with a real OCI
    client: an accessory of that subject, as Harbor and zot see it)."""
    by_name = attached_subject(tag)
    if by_name is not None:
        return by_name
    found = repo.tags.get(tag)
    m = inv.manifests.get(found.current) if found is not None and found.current else None
    return m.subject if m is not None else None
