"""Apply, rollback, purge and history on an S3-backed registry.

The same transaction as apply.py, with keys for folders: a target is the key
prefix ``<v2>/<path>/``; apply copies each of its objects server side into
``regplan-state/quarantine/<apply_id>/<slot>/`` in the same bucket, then
deletes the originals (a crash between the two leaves both copies: running
apply again copies again and deletes). Rollback copies back what the storage
lacks, then deletes the quarantine. Each batch is announced first by a journal
object under ``regplan-state/applies/<apply_id>/journal/``; the state object
is replaced at every step. Every step is decided by where each object is, so a
run killed anywhere is finished by running it again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import attrs

from regplan import codec, fingerprint, s3times, signing
from regplan.apply import (
    INDEX,
    LIVE,
    ApplyResult,
    Progress,
    RollbackResult,
    _batches,
    _iso,
    _new_id,
    _overlap,
    _unexpected_changes,
    interrupted,
    purgeable,
    rolling_back,
)
from regplan.errors import ApplyError, StalePlanError, StorageError
from regplan.journal import ApplyRecord, State, parse_state, state_bytes
from regplan.planfile import PlanStream
from regplan.s3 import Bucket, Obj, S3Storage
from regplan.s3lock import Lock
from regplan.s3preflight import differs, preflight
from regplan.workflow import check_fresh, current_digest, describe_changes

log = logging.getLogger(__name__)

JOBS = 16
"""Targets listed and copied at once (each waits on the server, not the CPU)."""


@attrs.frozen
class Keys:
    """Where one apply keeps its record and its quarantine in the bucket."""

    storage: S3Storage
    apply_id: str

    @property
    def record(self) -> str:
        return f"{self.storage.state_prefix}applies/{self.apply_id}/"

    @property
    def quarantine(self) -> str:
        return f"{self.storage.state_prefix}quarantine/{self.apply_id}/"

    def slot(self, index: int) -> str:
        return f"{self.quarantine}{index:07d}/"

    def source(self, path: str) -> str:
        return f"{self.storage.v2_prefix}{path}/"

    @property
    def state(self) -> str:
        return self.record + "state.json"

    @property
    def plan(self) -> str:
        return self.record + "plan.json"

    def journal(self, n: int) -> str:
        return f"{self.record}journal/{n:07d}.json"


def lock(bucket: Bucket, command: str, break_lock: bool) -> Lock:
    return Lock(bucket, command=command, now=time.time(), break_stale=break_lock)


def records(bucket: Bucket) -> list[ApplyRecord]:
    """Every apply recorded in the bucket's state, oldest first."""
    base = f"{bucket.storage.state_prefix}applies/"
    names, _ = bucket.folders(base)
    found = []
    for name in names:
        key = f"{base}{name}/state.json"
        try:
            found.append(parse_state(bucket.get(key, 1 << 20), f"s3://{bucket.name}/{key}"))
        except FileNotFoundError:
            continue  # an apply that never got as far as its state
    return sorted(found, key=lambda r: r.seq)


def _write_state(bucket: Bucket, keys: Keys, record: ApplyRecord) -> None:
    bucket.put(keys.state, state_bytes(record))


def _load_state(bucket: Bucket, keys: Keys) -> ApplyRecord:
    where = f"s3://{bucket.name}/{keys.state}"
    try:
        return parse_state(bucket.get(keys.state, 1 << 20), where)
    except FileNotFoundError:
        known = ", ".join(r.apply_id for r in records(bucket)) or "none"
        raise ApplyError(
            f"no apply {keys.apply_id} in {keys.storage.root}/regplan-state (applies: {known})"
        ) from None


@contextlib.contextmanager
def _state_plan(bucket: Bucket, keys: Keys) -> Iterator[PlanStream]:
    """The plan an apply began with, downloaded to a private temporary file."""
    with tempfile.TemporaryFile() as f:
        try:
            bucket.get_to(keys.plan, f)
        except FileNotFoundError:
            raise ApplyError(
                f"apply {keys.apply_id} has no plan.json; nothing was changed"
            ) from None
        f.flush()
        with PlanStream.of_file(f, f"s3://{bucket.name}/{keys.plan}") as stream:
            yield stream


# -- apply ---------------------------------------------------------------------


def apply_plan(
    stream: PlanStream,
    storage: S3Storage,
    *,
    now: datetime,
    progress: Progress | None = None,
    scan_progress: Callable[[int], None] | None = None,
    break_lock: bool = False,
    bucket: Bucket | None = None,
    registry: str = "",
) -> ApplyResult:
    """Move a verified plan's targets into the bucket's quarantine (or finish an
    interrupted apply of it)."""
    plan = stream.header
    bucket = bucket or Bucket(storage)
    bucket.check()
    with lock(bucket, f"apply {plan.plan_id}", break_lock) as held:
        resuming = interrupted(records(bucket), plan.plan_id)
        if resuming is not None:
            keys = Keys(storage, resuming.apply_id)
            with _state_plan(bucket, keys) as began:
                if signing.body_digest(began) != signing.body_digest(stream):
                    raise ApplyError(
                        f"this plan differs from the plan apply {resuming.apply_id} began with "
                        f"(s3://{bucket.name}/{keys.plan}); finish that one, or roll it back"
                    )
            log.info("resuming apply %s", resuming.apply_id)
            record = resuming
        else:
            preflight(stream, bucket, storage)
            check_fresh(plan, storage, scan_progress)
            keys = Keys(storage, _new_id(now))
            record = _begin(bucket, stream, keys, now, registry)
        moved = _move_targets(bucket, stream, keys, progress, held, resuming=resuming is not None)
        after = current_digest(storage, scan_progress)
        ok = after.digest == plan.fingerprint.after
        changed = () if ok else _unexpected_changes(stream, after)
        note = "" if ok else "tree differs from the plan's prediction: " + describe_changes(changed)
        _write_state(
            bucket, keys, attrs.evolve(record, state=State.APPLIED, updated_at=_iso(now), note=note)
        )
    return ApplyResult(
        apply_id=keys.apply_id,
        plan_id=plan.plan_id,
        moved=moved,
        bytes=plan.summary.bytes,
        quarantine=f"s3://{bucket.name}/{keys.quarantine}",
        resumed=resuming is not None,
        fingerprint_ok=ok,
        changed=changed,
    )


def _upload(bucket: Bucket, key: str, chunks: Iterable[bytes]) -> None:
    """Write an object from chunks through a temporary file (never whole in memory)."""
    with tempfile.TemporaryFile() as f:
        f.writelines(chunks)
        f.seek(0)
        bucket.put(key, f)


def _begin(
    bucket: Bucket, plan: PlanStream, keys: Keys, now: datetime, registry: str
) -> ApplyRecord:
    _upload(bucket, keys.plan, plan.copy())  # the verified bytes, as read
    record = ApplyRecord(
        seq=1 + max((r.seq for r in records(bucket)), default=0),
        apply_id=keys.apply_id,
        plan_id=plan.header.plan_id,
        state=State.APPLYING,
        root=keys.storage.root,
        started_at=_iso(now),
        updated_at=_iso(now),
        targets=plan.counts["targets"],
        bytes=plan.header.summary.bytes,
        registry=registry,
    )
    _write_state(bucket, keys, record)
    _upload(
        bucket,
        keys.quarantine + INDEX,
        itertools.chain(
            (b"slot\tkind\tpath\n",),
            (f"{i:07d}\t{t.kind.value}\t{t.path}\n".encode() for i, t in enumerate(plan.targets())),
        ),
    )
    return record


def _move_targets(
    bucket: Bucket,
    plan: PlanStream,
    keys: Keys,
    progress: Progress | None,
    held: Lock,
    *,
    resuming: bool,
) -> int:
    """Copy each target's objects into its slot, then delete them from the storage, a
    batch at a time (copies of a batch in parallel, its deletes 1,000 per request)."""
    total = plan.counts["targets"]
    moved = 0
    overlay = s3times.Overlay.load(bucket, keys.storage)

    def one(item: tuple[int, Any]) -> tuple[list[str], str]:
        i, t = item
        source = keys.source(t.path)
        objs = list(bucket.objects(source))
        if not objs:
            if resuming and next(iter(bucket.objects(keys.slot(i))), None) is not None:
                return [], ""  # moved before the crash
            raise StalePlanError(
                f"target {t.path} vanished since planning; nothing further was moved"
            )
        for o in objs:
            bucket.copy(source + o.rel, keys.slot(i) + o.rel, o.size)
        times = (
            s3times.originals_row(i, o, overlay.time(f"{t.path}/{o.rel}", o))
            for o in objs
            if s3times.dated(f"{t.path}/{o.rel}")
        )
        return [source + o.rel for o in objs], "".join(times)

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        for start, batch in _batches(enumerate(plan.targets())):
            bucket.put(
                keys.journal(start),
                codec.canonical({"op": "move", "from": start, "to": start + len(batch)}),
            )
            try:
                done = list(pool.map(one, batch))
                copied = [objs for objs, _ in done]
                rows = "".join(r for _, r in done)
                _keep_times(bucket, s3times.originals_key(keys.record, start), rows)
                bucket.delete(k for objs in copied for k in objs)
            except StorageError as e:
                raise ApplyError(
                    f"{e}; {moved} moved so far, finish with the same apply, or undo with: "
                    f"regplan rollback {keys.apply_id}"
                ) from None
            moved += sum(1 for objs in copied if objs)
            held.renew(time.time())
            if progress is not None:
                progress(start + len(batch), total)
    if progress is not None:
        progress(total, total)
    return moved


def _keep_times(bucket: Bucket, key: str, rows: str) -> None:
    """Record a batch's times before deleting what they date, after the rows an
    interrupted run wrote there (what it deleted is dated by those alone)."""
    with contextlib.suppress(FileNotFoundError):
        rows = bucket.get(key).decode("utf-8", "replace") + rows
    if rows:
        bucket.put(key, rows.encode())


# -- rollback ------------------------------------------------------------------


def _slots(bucket: Bucket, keys: Keys) -> dict[int, list[Obj]]:
    """The quarantine's objects by slot (one listing of the whole quarantine)."""
    out: dict[int, list[Obj]] = {}
    for o in bucket.objects(keys.quarantine):
        slot, sep, rest = o.rel.partition("/")
        if sep and slot.isdigit():  # rest "": a folder marker at the target's own prefix
            out.setdefault(int(slot), []).append(attrs.evolve(o, rel=rest))
    return out


def rollback(
    *,
    storage: S3Storage,
    apply_id: str,
    now: datetime,
    progress: Progress | None = None,
    scan_progress: Callable[[int], None] | None = None,
    break_lock: bool = False,
    bucket: Bucket | None = None,
    registry: str = "",
) -> RollbackResult:
    """Copy everything of one apply back, then delete its quarantine; refuse when a
    target's place holds something new (a push since the apply)."""
    bucket = bucket or Bucket(storage)
    bucket.check()
    keys = Keys(storage, apply_id)
    with lock(bucket, f"rollback {apply_id}", break_lock) as held:
        record = _load_state(bucket, keys)
        if record.state in (State.PURGING, State.PURGED):
            raise ApplyError(
                f"apply {apply_id} was purged: its quarantine is gone, nothing to restore"
            )
        if record.state == State.ROLLED_BACK:
            raise ApplyError(f"apply {apply_id} was already rolled back")
        with _state_plan(bucket, keys) as plan:
            _refuse_out_of_order(bucket, record, plan)
            slots = _slots(bucket, keys)
            paths = {i: t.path for i, t in enumerate(plan.targets()) if i in slots}
            present = _refuse_reappeared(bucket, keys, slots, paths)
            record = rolling_back(record, now, registry)
            _write_state(bucket, keys, record)
            restored = _restore(bucket, keys, slots, paths, present, progress, held)
            fp = plan.header.fingerprint
        bucket.delete([keys.quarantine + INDEX])
        now_digest = current_digest(storage, scan_progress)
        ok = now_digest.digest == fp.before
        changed = () if ok else tuple(fingerprint.changed_parts(fp.parts, now_digest.named_parts()))
        note = "" if ok else "tree differs from the plan's before: " + describe_changes(changed)
        _write_state(
            bucket,
            keys,
            attrs.evolve(record, state=State.ROLLED_BACK, bytes=0, updated_at=_iso(now), note=note),
        )
    return RollbackResult(
        apply_id=apply_id, restored=restored, recreated=0, fingerprint_ok=ok, changed=changed
    )


def _refuse_reappeared(
    bucket: Bucket, keys: Keys, slots: dict[int, list[Obj]], paths: dict[int, str]
) -> dict[int, dict[str, Obj]]:
    """A target's place may still hold what an interrupted apply had copied but not yet
    deleted (the same key, size and ETag); anything else there is new (a push since the
    apply, or the same key re-pushed with other bytes): refuse. Returns, for the targets
    whose place is not empty, the keys still there (not to copy back)."""
    reappeared: list[str] = []
    present: dict[int, dict[str, Obj]] = {}

    def check(i: int) -> None:
        mine = {o.rel: o for o in slots[i]}
        there = {o.rel: o for o in bucket.objects(keys.source(paths[i]))}
        if any(rel not in mine or differs(o, mine[rel]) for rel, o in there.items()):
            reappeared.append(paths[i])
        elif there:
            present[i] = there

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        list(pool.map(check, sorted(paths)))
    if reappeared:
        raise ApplyError(
            f"cannot roll back {keys.apply_id}: {len(reappeared)} path(s) reappeared since the "
            f"apply (a new push?), first {sorted(reappeared)[0]}; nothing was moved"
        )
    return present


def _restore(
    bucket: Bucket,
    keys: Keys,
    slots: dict[int, list[Obj]],
    paths: dict[int, str],
    present: dict[int, dict[str, Obj]],
    progress: Progress | None,
    held: Lock,
) -> int:
    """Copy back what the storage lacks (``present``: what it still holds, seen under the
    lock by the check before), record the restored keys' original times, then delete the
    quarantine's copies, a batch at a time."""
    restored = 0
    total = len(paths)
    times = s3times.originals(bucket, keys.record)

    def one(i: int) -> tuple[list[str], str]:
        source = keys.source(paths[i])
        there = present.get(i, {})
        rows = []
        for o in slots[i]:
            now = there.get(o.rel)  # copied but not yet deleted by an interrupted apply
            etag, mtime = (
                (now.etag, now.mtime)
                if now is not None
                else bucket.copy(keys.slot(i) + o.rel, source + o.rel, o.size)
            )
            original = times.get((i, o.rel))
            if original is not None:
                rel = f"{paths[i]}/{o.rel}"
                rows.append(s3times.restored_row(rel, etag, original[1], mtime))
        return [keys.slot(i) + o.rel for o in slots[i]], "".join(rows)

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        for start, batch in _batches(sorted(paths)):
            bucket.put(
                keys.journal(1_000_000 + start),
                codec.canonical({"op": "rollback", "from": start, "to": start + len(batch)}),
            )
            try:
                done = list(pool.map(one, batch))
                rows = "".join(r for _, r in done)
                key = s3times.restored_key(keys.storage, keys.apply_id, batch[0])
                _keep_times(bucket, key, rows)
                bucket.delete(k for objs, _ in done for k in objs)
            except StorageError as e:
                raise ApplyError(
                    f"{e}; {restored} restored so far, run the same rollback again once fixed"
                ) from None
            restored += len(batch)
            held.renew(time.time())
            if progress is not None:
                progress(restored, total)
    return restored


def _refuse_out_of_order(bucket: Bucket, record: ApplyRecord, plan: PlanStream) -> None:
    """As on a filesystem (apply._refuse_out_of_order): undo applies that touch the same
    folders in reverse order."""
    mine: list[str] | None = None
    for later in records(bucket):
        if later.seq <= record.seq or later.state not in LIVE:
            continue
        if mine is None:
            mine = [t.path for t in plan.targets()]
        with _state_plan(bucket, Keys(bucket.storage, later.apply_id)) as other:
            clash = _overlap(mine, [t.path for t in other.targets()])
        if clash is not None:
            raise ApplyError(
                f"cannot roll back {record.apply_id} before {later.apply_id}, which was applied "
                f"after it and also touched {clash}: first run: regplan rollback {later.apply_id}"
            )


# -- purge and history ---------------------------------------------------------


def purge(
    *,
    storage: S3Storage,
    apply_id: str | None,
    older_than: timedelta | None,
    now: datetime,
    progress: Progress | None = None,
    include_unverified: bool = False,
    break_lock: bool = False,
    bucket: Bucket | None = None,
) -> list[ApplyRecord]:
    """Delete the quarantine of one apply, or of every applied one older than an age
    (as apply.purge)."""
    bucket = bucket or Bucket(storage)
    bucket.check()
    with lock(bucket, f"purge {apply_id or 'older than ' + str(older_than)}", break_lock):
        if apply_id is not None:
            chosen = purgeable([_load_state(bucket, Keys(storage, apply_id))])
        else:
            chosen = purgeable(records(bucket), older_than, now, include_unverified)
        done = []
        for record in chosen:
            keys = Keys(storage, record.apply_id)
            _write_state(
                bucket, keys, attrs.evolve(record, state=State.PURGING, updated_at=_iso(now))
            )
            try:
                gone = [o.rel for o in bucket.objects(keys.quarantine)]
                for start in range(0, len(gone), 1000):
                    bucket.delete(keys.quarantine + rel for rel in gone[start : start + 1000])
                    if progress is not None:
                        progress(min(start + 1000, len(gone)), len(gone))
            except StorageError as e:
                raise ApplyError(f"{e}; run the purge again") from None
            final = attrs.evolve(record, state=State.PURGED, bytes=0, updated_at=_iso(now))
            _write_state(bucket, keys, final)
            done.append(final)
        return done


def history(storage: S3Storage, bucket: Bucket | None = None) -> list[ApplyRecord]:
    return records(bucket or Bucket(storage))
