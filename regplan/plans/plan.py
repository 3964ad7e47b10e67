"""The plan model, format v1 (plans/README.md documents it field by field)."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping

import attrs

from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import path_problem, printable

FORMAT = "regplan.plan"
VERSION = 1


class TargetKind(enum.Enum):
    """What a target is (a folder, but for a leftover). The order of members is the safe
    removal order."""

    REPOSITORY = "repository"
    TAG = "tag"
    TAG_INDEX = "tag_index"
    REVISION = "revision"
    LAYER_LINK = "layer_link"
    UPLOAD = "upload"
    LEFTOVER = "leftover"
    """A file, not a folder: a temporary file a registry write left (scan.entries)."""
    BLOB = "blob"
    EMPTY_DIR = "empty_dir"

    @property
    def phase(self) -> int:
        return _PHASES[self]

    @property
    def is_file(self) -> bool:
        return self is TargetKind.LEFTOVER


_PHASES = {kind: i for i, kind in enumerate(TargetKind)}


def _fits_kind(instance: Target, _: attrs.Attribute[TargetKind], value: TargetKind) -> None:
    """Inside blobs/ or repositories/, no empty, '.' or '..' components (never outside the
    tree), and the shape of its kind (a "blob" is one blob's folder)."""
    why = path_problem(instance.path, value.value)
    if why is not None:
        raise ValueError(f"target path {printable(instance.path)!r} {why}")


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _a_digest(_: object, __: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not _DIGEST.fullmatch(value):
        raise ValueError(f"target digest {printable(value)[:80]!r} is not sha256:<64 hex>")


@attrs.frozen(kw_only=True)
class Target:
    path: str
    """Relative to docker/registry/v2, POSIX, no trailing slash."""
    kind: TargetKind = attrs.field(validator=_fits_kind)
    reason: str
    refs: tuple[str, ...] = ()
    bytes: int = 0
    digest: str | None = attrs.field(default=None, validator=_a_digest)
    """What the target was when planned (scan.identity): every path under it with its
    content, and its tags' push times; an apply moves it only while that still holds.
    None in plans made before regplan recorded it (those apply only as planned: --exact)."""

    @property
    def sort_key(self) -> tuple[int, str]:
        return (self.kind.phase, self.path)


@attrs.frozen(kw_only=True)
class Kept:
    path: str
    reason: str
    refs: tuple[str, ...] = ()


class Verdict(enum.Enum):
    """What a plan does to an image."""

    REMOVED = "removed"
    KEPT = "kept"
    """A rule of the request looked at it and keeps it (the reason names the rule)."""
    UNTOUCHED = "untouched"
    """No rule of the request selects its repository."""


@attrs.frozen(kw_only=True)
class Image:
    """An image as the plan found it and what the plan does to it: a tag, an untagged
    manifest (``tag`` None), or an attached tag (``attached_to`` names its image)."""

    repo: str
    tag: str | None = None
    digest: str | None = None
    """The manifest (a tag's current one); None when a tag's link cannot be read."""
    verdict: Verdict
    reason: str
    """The rule that decided (``rank 2 of keep-last 3 by push time``, ``requested: …``)."""
    attached_to: str | None = None
    """An attached tag's (signature's, attestation's ...) image: ``repo@digest``."""
    kind: str = "image"
    """``image``, ``untagged``, or what an attached tag holds (``signature`` ...)."""
    bytes: int = 0
    """The image's size: its manifest, config and layers (an index's children too),
    each blob once; shared blobs count in every image that uses them."""
    pushed: str | None = None
    """A tag's last push (its ``current/link``'s time), UTC."""
    created: str | None = None
    """Its image config's ``created`` (when the plan read it: ``--sort-by created``)."""
    rule: str | None = None
    """The retention rule that decided it (a policy rule's label, ``--image SPEC``)."""
    rank: int | None = None
    """Its rank under that rule (newest first), when the rule ranks."""
    last_pulled: str | None = None
    """Its last pull (with its index's and children's), UTC; None: not pulled, or the
    plan was made without ``--pulls``."""
    pulls: int | None = None
    """How many pulls the records hold (0: none); None without ``--pulls``."""

    @property
    def name(self) -> str:
        if self.tag is not None:
            return f"{self.repo}:{self.tag}"
        return f"{self.repo}@{self.digest}"


@attrs.frozen(kw_only=True)
class PlanProblem:
    path: str
    code: ProblemCode
    message: str


@attrs.frozen(kw_only=True)
class Tool:
    name: str
    version: str


@attrs.frozen(kw_only=True)
class ProtectRecord:
    """A ``--protect`` line as the plan records it, with what it matched."""

    source: str
    """``FILE:LINE``"""
    ref: str
    matches: tuple[str, ...] = ()
    """The images (``repo@digest``) it keeps; empty: it matched nothing (a warning)."""


@attrs.frozen(kw_only=True)
class SelectionRecord:
    """The selection as the user gave it (globs unexpanded, ages as written)."""

    images: tuple[str, ...] = ()
    untagged: tuple[str, ...] = ()
    prune: bool = False
    keep_last: int | None = None
    older_than: str | None = None
    match: str | None = None
    exclude: str | None = None
    keep: str | None = None
    sort_by: str = "pushed"
    allow_empty_repos: bool = False
    gc: bool = False
    gc_min_age: str | None = None
    uploads_older_than: str | None = None
    leftovers_older_than: str | None = None
    protect: tuple[ProtectRecord, ...] = ()
    pulled_within: str | None = None


@attrs.frozen(kw_only=True)
class PolicyRecord:
    """The policy file a plan was made with: its name, SHA-256 and whole text."""

    file: str
    sha256: str
    text: str


@attrs.frozen(kw_only=True)
class PullSpan:
    """A time a pull store's source covers (UTC, to the second)."""

    source: str
    since: str
    until: str


@attrs.frozen(kw_only=True)
class PulledImage:
    """An image tag's pulls as the plan's rules judged them (an index's with its
    children's, regplan.pulls.facts)."""

    repo: str
    tag: str
    last: str
    """The last pull, UTC, to the second."""
    count: int


@attrs.frozen(kw_only=True)
class PullsRecord:
    """The pull store a plan was made with (``--pulls``): its name, the digest of the
    records read, what they cover, and the pulls of every image a rule judged by pulls
    (an apply decides again with these)."""

    file: str
    sha256: str
    spans: tuple[PullSpan, ...] = ()
    images: tuple[PulledImage, ...] = ()


@attrs.frozen(kw_only=True)
class ListingRecord:
    """The listing a plan was made from (``--listing``) instead of listing the store:
    its file's name and SHA-256 (of the manifest, for an inventory report), its kind,
    and when it was taken (UTC, to the second)."""

    file: str
    sha256: str
    format: str
    listed_at: str


@attrs.frozen(kw_only=True)
class Request:
    argv: tuple[str, ...]
    selection: SelectionRecord
    policy: PolicyRecord | None = None
    """Only in plans made with ``--policy``."""
    pulls: PullsRecord | None = None
    """Only in plans made with ``--pulls``."""
    listing: ListingRecord | None = None
    """Only in plans made with ``--listing``."""


@attrs.frozen(kw_only=True)
class Fingerprint:
    algorithm: str
    before: str
    after: str
    entries: int
    parts: Mapping[str, str]
    """Part digests of the tree before: names what changed when the plan is stale."""


@attrs.frozen(kw_only=True)
class Summary:
    targets: int
    bytes: int
    by_kind: Mapping[str, int]


@attrs.frozen(kw_only=True)
class Signature:
    keyid: str
    role: str
    signer: str
    signed_at: str
    sig: str


@attrs.frozen(kw_only=True)
class StorageRecord:
    """Where an object-store registry is (never a secret): its driver (a cloud's name in
    storage/clouds.py) and what that cloud needs to find it again, each cloud checking its
    own (``from_record``). Written flat (``{"driver": "s3", "bucket": ...}``); filesystem
    plans have none: their ``root`` is the rootdirectory."""

    driver: str
    params: tuple[tuple[str, str], ...] = ()
    """(name, value) in the order the cloud gave them."""

    @classmethod
    def of(cls, record: Mapping[str, str]) -> StorageRecord:
        rest = {k: v for k, v in record.items() if k != "driver"}
        return cls(driver=record["driver"], params=tuple(rest.items()))

    def flat(self) -> dict[str, str]:
        """As written in the plan, and as each cloud's ``from_record`` takes it."""
        return {"driver": self.driver, **dict(self.params)}


@attrs.frozen(kw_only=True)
class Plan:
    format: str = FORMAT
    version: int = VERSION
    plan_id: str
    created_at: str
    tool: Tool
    root: str
    storage: StorageRecord | None = None
    """Set for object storage only (and then written; absent from filesystem plans)."""
    request: Request
    fingerprint: Fingerprint
    summary: Summary
    targets: tuple[Target, ...]
    kept: tuple[Kept, ...] = ()
    problems: tuple[PlanProblem, ...] = ()
    images: tuple[Image, ...] = ()
    """Every tag found when planned (and the untagged manifests a rule looked at), with
    what the plan does to each and why: what the reviews show. Older plans have none."""
    signatures: tuple[Signature, ...] = ()


def summarize(targets: Iterable[Target]) -> Summary:
    return tally((t.kind.value, t.bytes) for t in targets)


def tally(kinds_and_bytes: Iterable[tuple[str, int]]) -> Summary:
    """The summary of targets given as (kind, bytes): a spooled plan's are summed
    without structuring each target again."""
    by_kind: dict[str, int] = {}
    count = size = 0
    for kind, n in kinds_and_bytes:
        by_kind[kind] = by_kind.get(kind, 0) + 1
        count += 1
        size += n
    return Summary(targets=count, bytes=size, by_kind=dict(sorted(by_kind.items())))
