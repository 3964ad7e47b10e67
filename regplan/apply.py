"""Apply, rollback, purge and history: the transaction, driven by the journal.

Apply moves each target directory by ``rename`` into a numbered slot,
``regplan-state/quarantine/<apply_id>/<index in the plan>`` (``INDEX.tsv``
beside the slots names each one's original path), in the plan's order, in
batches: the batch is announced in the journal (fsynced), moved, and the
touched directories are fsynced (group commit). Every step is idempotent and decided by where
each target is (storage or quarantine), so a run killed at any point is
finished by running ``apply`` again, or undone by ``rollback``.
Pruned (empty) directories are removed with ``rmdir`` after their mode is
journaled, and recreated by rollback.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs

from regplan import approvals, confine, fingerprint, location, quarantine, signing
from regplan.errors import ApplyError, StalePlanError
from regplan.journal import (
    ApplyRecord,
    Journal,
    Record,
    State,
    read_journal,
    read_state,
    write_state,
)
from regplan.layout import STATE_DIR, V2, Storage, part_of
from regplan.location import Location
from regplan.lock import StorageLock
from regplan.plan import Target, TargetKind
from regplan.planfile import PlanStream
from regplan.quarantine import explain, fsync_dir, fsync_dirs, move, real_dir, same_filesystem
from regplan.s3 import S3Storage
from regplan.workflow import check_fresh, current_digest, describe_changes

log = logging.getLogger(__name__)

T = TypeVar("T")

INDEX = "INDEX.tsv"
"""In each quarantine: which slot holds which original path (for people browsing it)."""

BATCH = 512
"""Moves per journal record and per round of directory fsyncs (group commit)."""

Progress = Callable[[int, int], None]
"""Called with (done, total) as moves proceed."""


def _iso(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen(kw_only=True)
class ApplyResult:
    apply_id: str
    plan_id: str
    moved: int
    bytes: int
    quarantine: Path | str
    """A folder, or for object storage the key prefix of the quarantine."""
    resumed: bool
    fingerprint_ok: bool
    changed: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class RollbackResult:
    apply_id: str
    restored: int
    recreated: int
    fingerprint_ok: bool
    changed: tuple[str, ...] = ()


@attrs.frozen
class Paths:
    """Where one apply keeps its record and its quarantine."""

    storage: Storage
    apply_id: str
    record: Path = attrs.field(init=False)
    quarantine: Path = attrs.field(init=False)
    _slots: str = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        state = self.storage.state
        object.__setattr__(self, "record", state / "applies" / self.apply_id)
        object.__setattr__(self, "quarantine", state / "quarantine" / self.apply_id)
        object.__setattr__(self, "_slots", os.fspath(self.quarantine))

    def slot(self, index: int) -> str:
        """Where target ``index`` of the plan rests in quarantine: flat, so no mkdir per move."""
        return f"{self._slots}/{index:07d}"

    def slot_rel(self, index: int) -> str:
        """``slot`` relative to the storage root (for moves through a confine.Tree)."""
        return f"{STATE_DIR}/quarantine/{self.apply_id}/{index:07d}"

    @property
    def journal(self) -> Path:
        return self.record / "journal"

    @property
    def plan(self) -> Path:
        return self.record / "plan.json"


def record_json(r: ApplyRecord) -> dict[str, Any]:
    """One apply as ``history --json`` prints it."""
    return {
        "apply_id": r.apply_id,
        "state": r.state.value,
        "plan_id": r.plan_id,
        "started_at": r.started_at,
        "updated_at": r.updated_at,
        "targets": r.targets,
        "bytes": r.bytes,
        "note": r.note,
        "registry": r.registry,
    }


def lock(storage: Storage, command: str) -> StorageLock:
    return StorageLock(storage.state / "lock", command=command)


def records(storage: Location) -> list[ApplyRecord]:
    """Every apply recorded in the storage's state, oldest first (a symlink planted
    among them is refused, never followed)."""
    if isinstance(storage, S3Storage):
        from regplan import s3apply  # noqa: PLC0415 (it builds on this module)

        return s3apply.history(storage)
    base = storage.state / "applies"
    try:
        if not os.path.lexists(base):
            return []
        confine.real_directory(storage.state)
        confine.real_directory(base)
        names = sorted(os.listdir(base))
    except OSError as e:
        raise ApplyError(f"cannot read {base}: {quarantine.explain(e)}") from None
    found = []
    for name in names:
        d = base / name
        if os.path.lexists(d / "state.json"):
            found.append(read_state(d))
    return sorted(found, key=lambda r: r.seq)


def _new_id(now: datetime) -> str:
    """UTC time for reading, random hex for uniqueness (two applies can share a second)."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


# -- apply ---------------------------------------------------------------------


def apply_plan(
    *,
    plan_path: Path,
    trusted: Sequence[signing.TrustedKey],
    root: Path | S3Storage | None,
    required: int,
    now: datetime,
    progress: Progress | None = None,
    scan_progress: Callable[[int], None] | None = None,
    break_lock: bool = False,
    registry: str = "",
) -> ApplyResult:
    """Verify, then move the plan's targets into quarantine (or finish an interrupted apply).

    The plan is read as a stream: each step below takes one pass over its targets
    and holds none of them (only the empty folders to prune)."""
    with PlanStream(plan_path, snapshot=True) as stream:
        signing.verify_stream(stream, trusted, required=required, detached=approvals.beside(stream))
        stream.check_items()
        plan = stream.header
        found = location.of_plan(plan, root)
        if isinstance(found, S3Storage):
            from regplan import s3apply  # noqa: PLC0415 (it builds on this module)

            return s3apply.apply_plan(
                stream,
                found,
                now=now,
                progress=progress,
                scan_progress=scan_progress,
                break_lock=break_lock,
                registry=registry,
            )
        storage = found
        with lock(storage, f"apply {plan.plan_id}"):
            resuming = interrupted(records(storage), plan.plan_id)
            if resuming is not None:
                paths = Paths(storage, resuming.apply_id)
                with _state_plan(paths) as began:
                    if signing.body_digest(began) != signing.body_digest(stream):
                        raise ApplyError(
                            f"{plan_path} differs from the plan apply {resuming.apply_id} "
                            f"began with ({paths.plan}); finish that one, or roll it back"
                        )
                log.info("resuming apply %s", resuming.apply_id)
                record = resuming
            else:
                check_fresh(plan, storage, scan_progress)
                paths = Paths(storage, _new_id(now))
                _preflight(stream, storage, paths)
                record = _begin(stream, paths, now, registry)
            with Journal(paths.journal) as journal:
                moved = _move_targets(
                    stream, paths, journal, progress, resuming=resuming is not None
                )
            after = current_digest(storage, scan_progress)
            ok = after.digest == plan.fingerprint.after
            changed = () if ok else _unexpected_changes(stream, after)
            note = (
                ""
                if ok
                else "tree differs from the plan's prediction: " + describe_changes(changed)
            )
            write_state(
                paths.record,
                attrs.evolve(record, state=State.APPLIED, updated_at=_iso(now), note=note),
            )
    return ApplyResult(
        apply_id=paths.apply_id,
        plan_id=plan.plan_id,
        moved=moved,
        bytes=plan.summary.bytes,
        quarantine=paths.quarantine,
        resumed=resuming is not None,
        fingerprint_ok=ok,
        changed=changed,
    )


def interrupted(applies: Iterable[ApplyRecord], plan_id: str) -> ApplyRecord | None:
    """The interrupted apply of this plan to resume, or None to begin one; refuses a plan
    already applied (exit 4) or one whose apply was being rolled back."""
    previous = [r for r in applies if r.plan_id == plan_id]
    for r in previous:
        if r.state in (State.APPLIED, State.PURGING, State.PURGED):
            raise StalePlanError(f"plan {plan_id} was already applied as {r.apply_id}")
        if r.state == State.ROLLING_BACK:
            raise ApplyError(
                f"apply {r.apply_id} of this plan was interrupted while rolling back: "
                f"finish it with: regplan rollback {r.apply_id}"
            )
    return next((r for r in previous if r.state == State.APPLYING), None)


def _state_plan(paths: Paths) -> PlanStream:
    """The plan an apply began with, as it keeps it (a link or FIFO there is refused)."""
    return PlanStream(paths.plan, follow=False)


def _unexpected_changes(plan: PlanStream, actual: fingerprint.TreeDigest) -> tuple[str, ...]:
    """Name what differs from the plan's prediction, as precisely as the parts allow."""
    touched = {part_of(t.path) for t in plan.targets()}
    parts = plan.header.fingerprint.parts
    expected = {k: v for k, v in parts.items() if k not in touched}
    seen = {k: v for k, v in actual.named_parts().items() if k not in touched}
    changed = fingerprint.changed_parts(expected, seen)
    return tuple(changed) or (f"within the {len(touched)} part(s) this plan changes",)


def _preflight(plan: PlanStream, storage: Storage, paths: Paths) -> None:
    """Before anything moves: real directories only, and a quarantine that can take renames."""
    checked: set[str] = set()
    fresh = not os.path.lexists(paths.quarantine)  # then no slot can be taken
    for i, t in enumerate(plan.targets()):
        if not real_dir(storage.v2, t.path, checked):
            raise StalePlanError(f"target {t.path} vanished since planning")
        if not fresh and os.path.lexists(paths.slot(i)):
            raise ApplyError(f"quarantine already holds {paths.slot(i)}")
    _state_dir(storage, f"{STATE_DIR}/quarantine/{paths.apply_id}")
    try:
        same_filesystem(storage.v2, paths.quarantine)
    except ApplyError:
        shutil.rmtree(paths.quarantine, ignore_errors=True)
        raise


def _state_dir(storage: Storage, rel: str) -> None:
    """Make a folder of regplan-state/ (and its parents) without following a planted link."""
    try:
        with confine.Tree(storage.root) as root:
            root.dir(rel, create=True)
    except OSError as e:
        raise ApplyError(f"cannot create {storage.root / rel}: {explain(e)}") from None


def _write_new(path: Path, chunks: Iterable[bytes]) -> None:
    """Write a new file of the state folder (never through a link), fsynced."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with open(fd, "wb") as f:
            f.writelines(chunks)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ApplyError(f"cannot write {path}: {explain(e)}; nothing was moved") from None


def rolling_back(record: ApplyRecord, now: datetime, registry: str) -> ApplyRecord:
    """The record as a rollback begins: how it knew the registry could not write joins
    the apply's."""
    said = f"{record.registry}; rollback: {registry}" if record.registry else registry
    return attrs.evolve(record, state=State.ROLLING_BACK, updated_at=_iso(now), registry=said)


def _begin(plan: PlanStream, paths: Paths, now: datetime, registry: str) -> ApplyRecord:
    _state_dir(paths.storage, f"{STATE_DIR}/applies/{paths.apply_id}")
    _write_new(paths.plan, plan.copy())  # the verified bytes, as read
    record = ApplyRecord(
        seq=1 + max((r.seq for r in records(paths.storage)), default=0),
        apply_id=paths.apply_id,
        plan_id=plan.header.plan_id,
        state=State.APPLYING,
        root=str(paths.storage.root),
        started_at=_iso(now),
        updated_at=_iso(now),
        targets=plan.counts["targets"],
        bytes=plan.header.summary.bytes,
        registry=registry,
    )
    write_state(paths.record, record)
    fsync_dir(paths.record.parent)
    _write_new(  # line by line: as one string it was 170 MiB at 516,000 targets
        paths.quarantine / INDEX,
        itertools.chain(
            (b"slot\tkind\tpath\n",),
            (
                f"{i:07d}\t{t.kind.value}\t{t.path}\n".encode()
                for i, t in enumerate(plan.targets())
                if t.kind != TargetKind.EMPTY_DIR
            ),
        ),
    )
    return record


def _where(v2: str, slot: str, t: Target, checked: set[str]) -> str:
    """'storage', 'quarantine', or an error when it is in both or neither."""
    at_source = real_dir(v2, t.path, checked)
    in_quarantine = os.path.lexists(slot)
    if at_source and not in_quarantine:
        return "storage"
    if in_quarantine and not at_source:
        return "quarantine"
    if at_source:
        raise ApplyError(
            f"{t.path} is both in the storage and in the quarantine: something recreated it "
            "during the apply; nothing further was moved"
        )
    raise StalePlanError(f"target {t.path} vanished since planning; nothing further was moved")


def _batches(items: Iterable[T]) -> Iterator[tuple[int, list[T]]]:
    """(index of the first, BATCH items) at a time."""
    it = iter(items)
    start = 0
    while batch := list(itertools.islice(it, BATCH)):
        yield start, batch
        start += len(batch)


def _split(targets: Iterable[Target], pruned: list[Target]) -> Iterator[tuple[int, Target]]:
    """(index in the plan, target) of every target to move; the empty folders to prune
    go to ``pruned`` as they pass (they come last: theirs is the last phase)."""
    for i, t in enumerate(targets):
        if t.kind == TargetKind.EMPTY_DIR:
            pruned.append(t)
        else:
            yield i, t


def _move_targets(
    plan: PlanStream, paths: Paths, journal: Journal, progress: Progress | None, *, resuming: bool
) -> int:
    """Move what is still in the storage. A fresh apply was just preflighted under the lock;
    a resumed one first finds out, target by target, where each one is.

    Every move is resolved from the root without following links at the moment
    of the rename (quarantine.move): a folder swapped for a symlink after the
    preflight stops the apply, it is never followed out of the root."""
    v2, quarantine = os.fspath(paths.storage.v2), os.fspath(paths.quarantine)
    pruned: list[Target] = []
    total = plan.counts["targets"]
    moved = 0
    checked: set[str] = set()
    with confine.Tree(paths.storage.root) as root:
        for start, batch in _batches(_split(plan.targets(), pruned)):
            todo = [
                (i, t)
                for i, t in batch
                if not resuming or _where(v2, paths.slot(i), t, checked) == "storage"
            ]
            if todo:
                journal.append({"op": "move", "from": start, "to": start + len(batch)})
                dirs: set[str] = {quarantine}
                for i, t in todo:
                    try:
                        move(root, f"{V2_REL}/{t.path}", root, paths.slot_rel(i))
                    except OSError as e:
                        raise ApplyError(
                            f"could not move {t.path}: {explain(e)}; {moved} moved so far, "
                            "finish with the same apply, or undo with: "
                            f"regplan rollback {paths.apply_id}"
                        ) from None
                    dirs.add(os.path.dirname(f"{v2}/{t.path}"))
                    moved += 1
                fsync_dirs(dirs)
                journal.append({"op": "moved", "to": start + len(batch)})
            if progress is not None:
                progress(start + len(batch), total)
        removed = {r.path for r in read_journal(paths.journal) if r.op == "rmdir"}
        for t in pruned:
            moved += _prune(root, paths.storage.v2, t, journal, removed, paths.apply_id)
    if progress is not None:
        progress(total, total)
    return moved


V2_REL = "/".join(V2)
"""The tree's folder relative to the storage root."""


def _prune(
    root: confine.Tree, v2: Path, t: Target, journal: Journal, removed: set[str], apply_id: str
) -> int:
    """Remove an empty directory tree, journaling each directory's mode first."""
    top = v2 / t.path
    if not real_dir(v2, t.path):
        if t.path in removed:
            return 0
        raise StalePlanError(f"target {t.path} vanished since planning; nothing further was moved")
    found: list[tuple[str, os.stat_result]] = []
    for dirpath, dirnames, filenames in os.walk(top, topdown=True):
        if filenames:
            raise ApplyError(
                f"{t.path} is no longer empty ({Path(dirpath) / filenames[0]} appeared); "
                f"undo with: regplan rollback {apply_id}"
            )
        rel = Path(dirpath).relative_to(v2).as_posix()
        found.append((rel, os.lstat(dirpath)))
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                raise ApplyError(f"{t.path} holds a symlink; nothing further was moved")
    journal.append(
        *(
            {
                "op": "rmdir",
                "path": rel,
                "mode": stat.S_IMODE(st.st_mode),
                "uid": st.st_uid,
                "gid": st.st_gid,
            }
            for rel, st in found
        )
    )
    try:
        for rel, _ in reversed(found):
            fd, name = root.parent(f"{V2_REL}/{rel}")
            os.rmdir(name, dir_fd=fd)
            root.forget(f"{V2_REL}/{rel}")
    except OSError as e:
        raise ApplyError(
            f"could not remove empty folder {t.path}: {explain(e)}; "
            f"finish with the same apply, or undo with: regplan rollback {apply_id}"
        ) from None
    fsync_dir(top.parent)
    return 1


# -- rollback ------------------------------------------------------------------


def _load_state(storage: Storage, apply_id: str) -> tuple[Paths, ApplyRecord]:
    paths = Paths(storage, apply_id)
    if not (paths.record / "state.json").exists():
        known = ", ".join(r.apply_id for r in records(storage)) or "none"
        raise ApplyError(f"no apply {apply_id} in {storage.state} (applies: {known})")
    return paths, read_state(paths.record)


def rollback(
    *,
    storage: Location,
    apply_id: str,
    now: datetime,
    progress: Progress | None = None,
    scan_progress: Callable[[int], None] | None = None,
    break_lock: bool = False,
    registry: str = "",
) -> RollbackResult:
    """Move everything of one apply back, recreate pruned directories; refuse on conflicts.

    The plan is read as a stream, pass by pass (what to restore, then the moves); no
    target is held. Moves need no order among themselves (no target lies inside
    another; the empty folders pruned, which may hold targets, are recreated first)."""
    if isinstance(storage, S3Storage):
        from regplan import s3rollback  # noqa: PLC0415 (it builds on this module)

        return s3rollback.rollback(
            storage=storage,
            apply_id=apply_id,
            now=now,
            progress=progress,
            scan_progress=scan_progress,
            break_lock=break_lock,
            registry=registry,
        )
    with lock(storage, f"rollback {apply_id}"):
        paths, record = _load_state(storage, apply_id)
        if record.state in (State.PURGING, State.PURGED):
            raise ApplyError(
                f"apply {apply_id} was purged: its quarantine is gone, nothing to restore"
            )
        if record.state == State.ROLLED_BACK:
            raise ApplyError(f"apply {apply_id} was already rolled back")
        with _state_plan(paths) as plan:
            _refuse_out_of_order(storage, record, plan)
            pruned = [r for r in read_journal(paths.journal) if r.op == "rmdir"]
            back = _preflight_destinations(storage, plan, paths, pruned)
            record = rolling_back(record, now, registry)
            write_state(paths.record, record)
            restored = _restore(storage, plan, paths, pruned, back, progress)
            fp = plan.header.fingerprint
        (paths.quarantine / INDEX).unlink(missing_ok=True)
        _remove_empty_tree(paths.quarantine)
        now_digest = current_digest(storage, scan_progress)
        ok = now_digest.digest == fp.before
        changed = () if ok else tuple(fingerprint.changed_parts(fp.parts, now_digest.named_parts()))
        note = "" if ok else "tree differs from the plan's before: " + describe_changes(changed)
        write_state(
            paths.record,
            attrs.evolve(record, state=State.ROLLED_BACK, bytes=0, updated_at=_iso(now), note=note),
        )
    return RollbackResult(
        apply_id=apply_id,
        restored=restored,
        recreated=len(pruned),
        fingerprint_ok=ok,
        changed=changed,
    )


def _in_quarantine(plan: PlanStream, paths: Paths) -> Iterator[tuple[int, Target]]:
    """(index, target) of every moved target whose slot is still taken."""
    for i, t in enumerate(plan.targets()):
        if t.kind != TargetKind.EMPTY_DIR and os.path.lexists(paths.slot(i)):
            yield i, t


def _restore(
    storage: Storage,
    plan: PlanStream,
    paths: Paths,
    pruned: Sequence[Record],
    back: int,
    progress: Progress | None,
) -> int:
    v2 = os.fspath(storage.v2)
    with Journal(paths.journal) as journal, confine.Tree(storage.root) as root:
        journal.append({"op": "rollback", "restore": back, "recreate": len(pruned)})
        try:
            for r in pruned:  # parents were journaled before their children
                _recreate(root, r)
        except OSError as e:
            raise ApplyError(
                f"could not recreate a pruned folder: {explain(e)}; nothing was moved back, "
                "run the rollback again once fixed"
            ) from None
        restored = 0
        for _, batch in _batches(_in_quarantine(plan, paths)):
            dirs: set[str] = set()
            for i, t in batch:
                try:
                    move(root, paths.slot_rel(i), root, f"{V2_REL}/{t.path}")
                except OSError as e:
                    raise ApplyError(
                        f"could not move {t.path} back: {explain(e)}; {restored} restored so "
                        f"far, run the same rollback again once fixed"
                    ) from None
                dirs.update((os.path.dirname(paths.slot(i)), os.path.dirname(f"{v2}/{t.path}")))
                restored += 1
            fsync_dirs(dirs)
            journal.append({"op": "restored", "count": restored})
            if progress is not None:
                progress(restored, back)
    return restored


def _recreate(root: confine.Tree, r: Record) -> None:
    """Make a pruned folder again with its journaled mode and owner: through descriptors
    reached without following links, so a planted symlink is never chmod'ed or chown'ed."""
    fd = root.dir(f"{V2_REL}/{r.path}", create=True)
    os.fchmod(fd, r.mode)
    if os.geteuid() == 0:
        os.fchown(fd, r.uid, r.gid)


def _preflight_destinations(
    storage: Storage, plan: PlanStream, paths: Paths, pruned: Sequence[Record]
) -> int:
    """Before anything moves back: no destination's parent is a symlink or a file
    (as apply checks its sources), whatever was planted since the apply, and no
    destination was taken again (a new push?). Returns how many targets go back."""
    checked: set[str] = set()
    v2 = os.fspath(storage.v2)
    moved = ((t.path, True) for _, t in _in_quarantine(plan, paths))
    back = 0
    reappeared: list[str] = []
    for rel, is_target in itertools.chain(((r.path, False) for r in pruned), moved):
        parent = rel.rpartition("/")[0]
        try:
            real_dir(storage.v2, parent, checked)
        except StalePlanError as e:
            raise ApplyError(f"cannot roll back to {rel}: {e}; nothing was moved") from None
        if is_target:
            back += 1
            if os.path.lexists(f"{v2}/{rel}"):
                reappeared.append(rel)
    if reappeared:
        raise ApplyError(
            f"cannot roll back {paths.apply_id}: {len(reappeared)} path(s) reappeared since the "
            f"apply (a new push?), first {reappeared[0]}; nothing was moved"
        )
    return back


def _overlap(a: Sequence[str], b: Sequence[str]) -> str | None:
    """A path of ``b`` that is, holds or lies inside a path of ``a``, or None."""
    mine = set(a)
    above = {p.rsplit("/", i)[0] for p in a for i in range(1, p.count("/") + 1)}
    for path in b:
        if path in mine or path in above:
            return path
        parts = path.split("/")
        if any("/".join(parts[:i]) in mine for i in range(1, len(parts))):
            return path
    return None


def _refuse_out_of_order(storage: Storage, record: ApplyRecord, plan: PlanStream) -> None:
    """Undo applies in reverse order where they touch the same folders: rolling back an
    earlier one first would recreate what a later one removed, and then the later one
    could never be rolled back cleanly. (Only when a later apply is live are the two
    plans' paths held, to compare them.)"""
    mine: list[str] | None = None
    for later in records(storage):
        if later.seq <= record.seq or later.state not in LIVE:
            continue
        if mine is None:
            mine = [t.path for t in plan.targets()]
        with _state_plan(Paths(storage, later.apply_id)) as other:
            clash = _overlap(mine, [t.path for t in other.targets()])
        if clash is not None:
            raise ApplyError(
                f"cannot roll back {record.apply_id} before {later.apply_id}, which was applied "
                f"after it and also touched {clash}: first run: regplan rollback {later.apply_id}"
            )


LIVE = (State.APPLYING, State.APPLIED, State.ROLLING_BACK)
"""States in which an apply's moves are (partly) in effect."""


def _remove_empty_tree(top: Path) -> None:
    """Remove a quarantine that holds only (empty) directories; keep it if a file is left."""
    if not top.exists():
        return
    for dirpath, _, filenames in os.walk(top):
        if filenames:
            log.warning("quarantine %s still holds %s; kept", top, Path(dirpath) / filenames[0])
            return
    shutil.rmtree(top)


# -- purge ---------------------------------------------------------------------


def purge(
    *,
    storage: Location,
    apply_id: str | None,
    older_than: timedelta | None,
    now: datetime,
    progress: Progress | None = None,
    include_unverified: bool = False,
    break_lock: bool = False,
) -> list[ApplyRecord]:
    """Delete the quarantine of one apply, or of every applied one older than an age.

    An apply whose final check found the tree other than predicted (its note says
    how) is left out of ``older_than`` unless ``include_unverified``: someone
    must look at it first, and purging it by id is that decision."""
    if isinstance(storage, S3Storage):
        from regplan import s3apply  # noqa: PLC0415 (it builds on this module)

        return s3apply.purge(
            storage=storage,
            apply_id=apply_id,
            older_than=older_than,
            now=now,
            progress=progress,
            include_unverified=include_unverified,
            break_lock=break_lock,
        )
    with lock(storage, f"purge {apply_id or 'older than ' + str(older_than)}"):
        if apply_id is not None:
            chosen = purgeable([_load_state(storage, apply_id)[1]])
        else:
            chosen = purgeable(records(storage), older_than, now, include_unverified)
        done = []
        for record in chosen:
            paths = Paths(storage, record.apply_id)
            write_state(
                paths.record, attrs.evolve(record, state=State.PURGING, updated_at=_iso(now))
            )
            try:
                _delete_quarantine(paths.quarantine, progress)
            except OSError as e:
                raise ApplyError(
                    f"could not delete {paths.quarantine}: {explain(e)}; run the purge again"
                ) from None
            final = attrs.evolve(record, state=State.PURGED, bytes=0, updated_at=_iso(now))
            write_state(paths.record, final)
            done.append(final)
        return done


def purgeable(
    found: Sequence[ApplyRecord],
    older_than: timedelta | None = None,
    now: datetime | None = None,
    include_unverified: bool = False,
) -> list[ApplyRecord]:
    """What a purge deletes: the one apply asked for by id (refused unless applied), or
    (``now`` given) every applied one older than ``older_than`` whose final check held
    unless ``include_unverified``."""
    if now is None:
        [record] = found
        if record.state not in (State.APPLIED, State.PURGING):
            raise ApplyError(
                f"apply {record.apply_id} is {record.state.value}; only an applied one can "
                "be purged"
            )
        return [record]
    cutoff = _iso(now - (older_than or timedelta(0)))
    return [
        r
        for r in found
        if r.state in (State.APPLIED, State.PURGING)
        and r.updated_at <= cutoff
        and (include_unverified or not r.note)
    ]


def _delete_quarantine(top: Path, progress: Progress | None) -> None:
    """Delete a quarantine slot by slot (each with rmtree, which follows no symlink),
    reporting (done, total); a quarantine that is not a real directory is refused."""
    try:
        mode = os.lstat(top).st_mode
    except FileNotFoundError:
        return  # a purge interrupted after the delete, run again
    if not stat.S_ISDIR(mode):
        raise ApplyError(f"{top} is not a directory (a symlink?); nothing was deleted")
    names = sorted(os.listdir(top))
    for done, name in enumerate(names, 1):
        path = os.path.join(top, name)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        if progress is not None and (done % BATCH == 0 or done == len(names)):
            progress(done, len(names))
    os.rmdir(top)
