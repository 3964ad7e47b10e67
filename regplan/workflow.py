"""The plan's path: make it, write it, read it, verify it (approving is
plans/approvals.py's).

``make_plan`` is scan -> resolve -> decide -> fingerprint -> sign;
``load_verified`` is read -> signatures -> structure -> freshness.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from regplan import __version__, heap
from regplan.changes import fresh
from regplan.decide import images
from regplan.decide.decision import Spooled
from regplan.decide.planner import decide_spooled
from regplan.decide.selection import Resolved, Selection, resolve
from regplan.errors import PlanWriteError
from regplan.plans import approvals, codec, signing
from regplan.plans import body as planbody
from regplan.plans.plan import (
    Fingerprint,
    Image,
    Kept,
    ListingRecord,
    Plan,
    PlanProblem,
    PolicyRecord,
    ProtectRecord,
    Request,
    SelectionRecord,
    Signature,
    StorageRecord,
    Target,
    Tool,
    tally,
)
from regplan.plans.planfile import PlanStream, Source
from regplan.plans.rule import Rule, Signers, require
from regplan.plans.spool import Sorted
from regplan.progress import Progress
from regplan.pulls import records
from regplan.scan import fingerprint, identity
from regplan.scan.inventory import Inventory
from regplan.scan.traits import Traits, read_for
from regplan.storage import location
from regplan.storage.clouds import Found
from regplan.storage.location import Location

log = logging.getLogger(__name__)


def timestamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")


class Draft:
    """A plan just made and signed: its header here, its targets still in the planner's
    spool (a ``planfile.Source``). Use as a context manager: leaving drops the spool."""

    def __init__(
        self,
        header: Plan,
        spooled: Spooled,
        found: Sorted,
        digests: bytes = b"",
        sign: Callable[[bytes], Signature] | None = None,
    ) -> None:
        self.header = header
        self._spooled = spooled
        self._digests = digests
        """Each target's digest (scan.identity), 32 bytes each, in plan order."""
        self._images = found
        """The image records, spooled as the targets are (``images.as_record``)."""
        self.counts = {
            "targets": header.summary.targets,
            "kept": len(spooled.kept),
            "problems": len(spooled.problems),
            "images": found.count,
        }
        self.sign = sign
        """The planner's signature of a body digest, made once: over the lists in the
        JSON (``sign_in_json``), or over a header that pins a Parquet body."""

    def sign_in_json(self) -> None:
        """Sign the plan as the JSON holds its lists (once: a signed draft stays as is)."""
        if self.header.signatures:
            return
        if self.sign is None:
            raise PlanWriteError("the plan is not signed: no key")
        body = codec.hex_sha256(codec.stream_body_chunks(self.header, self.raw_lists()))
        self.header = attrs.evolve(self.header, signatures=(self.sign(body),))

    def targets(self) -> Iterator[Target]:
        for i, t in enumerate(self._spooled.targets.targets()):
            yield attrs.evolve(t, digest=self._digest(i)) if self._digests else t

    def _digest(self, i: int) -> str:
        return identity.PREFIX + self._digests[32 * i : 32 * i + 32].hex()

    def kept(self) -> Iterator[Kept]:
        return iter(self._spooled.kept)

    def problems(self) -> Iterator[PlanProblem]:
        return iter(self._spooled.problems)

    def images(self) -> Iterator[Image]:
        return map(images.from_record, self._images)

    def raw_lists(self) -> dict[str, Iterator[Any]]:
        """The lists as the plan file holds them, one item at a time."""
        return {
            "targets": self._raw_targets(),
            "kept": codec.unstructure_items(self._spooled.kept),
            "problems": codec.unstructure_items(self._spooled.problems),
            "images": map(images.raw_of, self._images),
        }

    def _raw_targets(self) -> Iterator[dict[str, Any]]:
        for i, raw in enumerate(self._spooled.targets.raw()):
            if self._digests:
                raw["digest"] = self._digest(i)
            yield raw

    def close(self) -> None:
        self._spooled.targets.close()
        self._images.close()

    def __enter__(self) -> Draft:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


IMAGE_RUN = 1024
"""Image records held before a sorted run goes to disk: they are made while the
inventory is still held, at the plan's peak."""


def make_plan(
    *,
    storage: Location,
    selection: Selection,
    argv: Sequence[str],
    key: signing.SigningKey,
    signer: str,
    now: datetime,
    progress: Progress | None = None,
    traits: Traits | None = None,
    memory: str | None = None,
    listing: ListingRecord | None = None,
    body: str = "json",
) -> Draft:
    """Scan the storage and return the plan for ``selection`` (``traits``: what the
    registry makes of the tree; ``memory``: the mark's limit; ``listing``: plan --listing's),
    signed unless ``body`` puts its lists in a Parquet file, which ``write_plan`` signs as
    it pins it (one signature: one touch of a hardware key). The targets are spooled as
    they are decided and read in passes; the inventory is dropped before the passes."""
    inventory = location.read(
        storage, progress=progress, created=selection.created, mtimes=selection.ages
    )
    if traits is not None:
        inventory = read_for(inventory, traits)
    heap.give_back()
    resolved = resolve(selection, inventory, now)
    request = _request(selection, resolved, argv, listing)
    prune = selection.prune and location.has_folders(storage)  # a bucket has no empty folder
    spooled = decide_spooled(inventory, resolved, prune=prune, memory=memory)
    digests = _digests(inventory, spooled)
    found = Sorted(IMAGE_RUN)
    try:
        _spool_images(found, inventory, resolved, spooled)
        tree = inventory.tree
        del inventory, resolved  # the passes below need only the tree and the spool
        before = tree.digest
        after = location.predicted(storage, tree, spooled.targets.paths())
        del tree
        seed = codec.canonical([before.digest, codec.unstructure_request(request)])
        header = Plan(
            plan_id=f"{timestamp(now)}-{hashlib.sha256(seed).hexdigest()[:8]}",
            created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            tool=Tool(name="regplan", version=__version__),
            root=str(storage.root),
            storage=_record(storage),
            request=request,
            fingerprint=_fingerprint(before, after),
            summary=tally(spooled.targets.kinds_and_bytes()),
            targets=(),
        )
        sign = functools.partial(signing.sign_body, key=key, role="planner", signer=signer, now=now)
        draft = Draft(header, spooled, found, digests, sign)
        if not planbody.chosen(body, header.summary.targets):
            draft.sign_in_json()
    except BaseException:
        spooled.targets.close()
        found.close()
        raise
    log.debug("plan %s: %d targets", header.plan_id, header.summary.targets)
    return draft


def _digests(inventory: Inventory, spooled: Spooled) -> bytes:
    """Each target's digest (scan.identity), 32 bytes each, in plan order, made in
    that order: within a removal phase the paths are sorted, so the tree's parts
    come one after another and each is unpacked about once a phase (the tree keeps
    the last one). No list of the targets' paths is held (at a million files it
    was 66 MiB, the plan's peak). What the mark's database freed goes back to the
    system first: this pass comes on top."""
    heap.give_back()
    out = bytearray()
    for path in spooled.targets.plan_paths():
        out += bytes.fromhex(identity.of_target(inventory, path).removeprefix(identity.PREFIX))
    return bytes(out)


def _request(
    selection: Selection,
    resolved: Resolved,
    argv: Sequence[str],
    listing: ListingRecord | None = None,
) -> Request:
    """What was asked, as the plan records it (with what each --protect line matched)."""
    return Request(
        argv=tuple(argv),
        listing=listing,
        selection=SelectionRecord(
            images=tuple(str(i) for i in selection.images),
            untagged=selection.untagged,
            prune=selection.prune,
            gc=selection.gc,
            gc_min_age=selection.gc_min_age,
            uploads_older_than=selection.uploads_older_than,
            leftovers_older_than=selection.leftovers_older_than,
            protect=tuple(
                ProtectRecord(
                    source=p.source, ref=p.ref, matches=resolved.protect_matches.get(p.source, ())
                )
                for p in selection.protect
            ),
            **attrs.asdict(selection.retention),  # the record is flat: retention's fields
        ),
        policy=None
        if selection.policy is None
        else PolicyRecord(
            file=selection.policy.file, sha256=selection.policy.sha256, text=selection.policy.text
        ),
        pulls=None if selection.pulls is None else records.record(selection.pulls, resolved.pulled),
    )


def _fingerprint(before: fingerprint.TreeDigest, after: fingerprint.TreeDigest) -> Fingerprint:
    return Fingerprint(
        algorithm=fingerprint.ALGORITHM,
        before=before.digest,
        after=after.digest,
        entries=before.entries,
        parts=before.named_parts(),
    )


def _spool_images(
    found: Sorted, inventory: Inventory, resolved: Resolved, spooled: Spooled
) -> None:
    """The plan's image records (``images.records``) into ``found``, in plan order."""
    made = images.records(inventory, resolved, spooled.targets.image_targets(), spooled.kept)
    for n, image in enumerate(made):
        found.add(images.as_record(image, n))


def write_plan(plan: Plan | Draft, path: Path, *, body: str = "json") -> None:
    """Write atomically (a reader never sees half a plan) and item by item; on any
    failure (a full disk) the temporary file is removed and the error is one line.
    ``body`` (plan --body, ``plans.body``): a draft's lists go to a Parquet file
    beside ``path``, pinned by the header (signed again)."""
    if isinstance(plan, Plan):
        _write_chunks(codec.pretty_chunks(plan), path)
    elif planbody.chosen(body, plan.counts["targets"]):
        _write_with_body(plan, path)
    else:
        plan.sign_in_json()
        _write_chunks(codec.raw_pretty_chunks(plan.header, plan.raw_lists()), path)


def _write_with_body(draft: Draft, path: Path) -> None:
    if draft.sign is None:
        raise PlanWriteError("a plan with a Parquet body is signed when written: no key")
    if path.is_dir():
        raise PlanWriteError(f"{path} is a directory; give the plan file's name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PlanWriteError(f"cannot write plan {path}: {e.strerror}") from None
    beside = path.with_name(planbody.name_for(path))
    pin = planbody.write(beside, draft.raw_lists())
    try:
        header = attrs.evolve(draft.header, signatures=())
        raw = planbody.pinned(codec.unstructure(header), pin)
        signature = draft.sign(codec.hex_sha256(codec.raw_body_chunks(raw)))
        draft.header = attrs.evolve(header, signatures=(signature,))
        raw = planbody.pinned(codec.unstructure(draft.header), pin)
        _write_chunks([json.dumps(raw, indent=2, ensure_ascii=False) + "\n"], path)
    except BaseException:
        beside.unlink(missing_ok=True)
        raise


def _write_chunks(chunks: Iterable[str], path: Path) -> None:
    """Any failure (a full disk, or a bad item found while writing) removes the temporary
    file: no half plan is left."""
    if path.is_dir():
        raise PlanWriteError(f"{path} is a directory; give the plan file's name")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(chunks)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise PlanWriteError(f"cannot write plan {e.filename or path}: {e.strerror}") from None
        raise


def load_plan(path: Path) -> Plan:
    """A whole plan in memory, signatures unchecked (for tests and small plans: the
    commands read plans as streams)."""
    with PlanStream(path) as s:
        return whole(s)


def whole(source: Source) -> Plan:
    """A plan in memory from a stream or a draft (for tests and small plans)."""
    return attrs.evolve(
        source.header,
        targets=tuple(source.targets()),
        kept=tuple(source.kept()),
        problems=tuple(source.problems()),
        images=tuple(source.images()),
    )


@attrs.frozen(kw_only=True)
class Verified:
    header: Plan
    """The plan without its lists (they stay in the file: a verify holds no target)."""
    signers: tuple[signing.TrustedKey, ...]
    storage: Location
    principals: Signers | None = None
    """With an approval rule: the planner and approvers by principal (the rule held)."""


def load_verified(
    path: Path,
    *,
    trusted: Sequence[signing.TrustedKey],
    root: Found | None,
    required: int = 1,
    progress: Progress | None = None,
    rule: Rule | None = None,
) -> Verified:
    """Signatures first (exit 3; with ``rule``, an approval rule, they must meet it too),
    then the plan's form, then freshness (exit 4); the plan is read as a stream, so
    memory does not grow with it."""
    with PlanStream(path, snapshot=True) as stream:
        checked, signers = signing.verify_stream(
            stream, trusted, required=required, detached=approvals.beside(stream)
        )
        principals = None
        if rule is not None:
            principals = require(rule, checked, stream.header.plan_id)
        stream.check_items()
        header = stream.header
    storage = fresh.storage_of(header, root)
    fresh.check_fresh(header, storage, progress)
    return Verified(header=header, signers=tuple(signers), storage=storage, principals=principals)


def _record(storage: Location) -> StorageRecord | None:
    found = location.record(storage)
    return None if found is None else StorageRecord.of(found)
