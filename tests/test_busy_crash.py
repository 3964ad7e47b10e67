"""SIGKILL during an apply that skips (#32): the same apply run again finishes, with the
same skips, and every image that stays is whole.

The sample registry is planned (two tags of team/app, the whole of old/repo, every
untagged manifest, --gc, pruned), then pushed to: team/app:v1 again with new content
(changed since the plan), a new repository whose top layer is old/repo:2020's (no
longer selected) and an untagged manifest that uses a layer the plan removes (needed by
an image that stays). An apply of the plan on that tree moves part of the plan
and skips the rest. A child forked from this warm process (tests/test_crash.py) runs
it and is SIGKILLed at its first, middle and last rename (KillingDisk) and before and
just after each kind of step it asks of the store (Steps); the parent runs the same
apply again.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from regplan import apply
from regplan.changes.recheck import CHANGED, UNSELECTED
from regplan.changes.records import State
from regplan.changes.transaction import ApplyResult
from regplan.demo.samples import BASE, Registry, build_demo, build_scale, image
from regplan.errors import StalePlanError
from regplan.plans import signing
from regplan.progress import Progress
from regplan.scan.layout import blob_dir, repo_dir, tag_dir
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.location import Location
from regplan.storage.objects.bucket import Bucket
from regplan.storage.objects.memory import FLAVOURS
from regplan.storage.seam import Store
from tests.buckets import Counting, Crashing, InMemory, Killed, every, expire_lease
from tests.helpers import (
    KEY,
    NOW,
    broken_images,
    content_hashes,
    docker_hashes,
    on_disk,
    selection,
    write_plan_file,
    write_pub,
)
from tests.test_crash import KillingDisk, Steps, assert_killed, die, in_child, kill_points

LATER = 2_000_000_000.0
"""Pushes after planning."""


@attrs.define
class Busy:
    """The sample registry pushed to since its plan, and one whole apply of it."""

    base: Path
    plan: Path
    trusted: list[signing.TrustedKey]
    pushed: Path
    """The tree as the apply finds it (after the pushes)."""
    before: dict[str, str] = attrs.field(factory=dict)
    after: dict[str, str] = attrs.field(factory=dict)
    skipped: tuple[tuple[str, str], ...] = ()
    renames: int = 0
    steps: list[str] = attrs.field(factory=list)

    def copy(self, name: str) -> Path:
        dst = self.base / name
        shutil.copytree(self.pushed, dst, symlinks=True)
        return dst

    def apply(
        self,
        root: Path,
        opener: Callable[[Location], Store] | None = None,
        scan_progress: Progress | None = None,
    ) -> ApplyResult:
        return apply.apply_plan(
            plan_path=self.plan,
            trusted=self.trusted,
            root=root,
            required=1,
            now=NOW,
            registry="stopped (test)",
            opener=opener or location.store,
            scan_progress=scan_progress,
        )


def _busy(base: Path) -> Busy:
    pushed = base / "pushed"
    build_demo(pushed)
    sel = attrs.evolve(
        selection(("team/app:v1", "team/app:v2", "old/repo"), ("*",), prune=True), gc=True
    )
    plan = base / "busy.plan.json"
    write_plan_file(pushed, sel, plan)
    reg = Registry(v2=FsStorage.locate(pushed).v2, clock=LATER)
    reg.push("team/app", image([BASE, {"v1-again": b"again"}]), "v1")
    top = {"app/old-2020-0.txt": b"old-2020 file 0\n" * 64}  # old/repo:2020's own layer
    reg.push("sandbox/x", image([BASE, top]), "1")
    build0 = {"app/app-build0-0.txt": b"app-build0 file 0\n" * 64}  # an untagged one's layer
    reg.push("sandbox/y", image([BASE, build0]))  # untagged: nobody approved it
    trusted = [signing.load_trusted(write_pub(KEY, base / "k.pub"))]
    busy = Busy(base=base, plan=plan, trusted=trusted, pushed=pushed)
    busy.before = docker_hashes(pushed)
    whole = busy.copy("whole")
    counting, steps = KillingDisk(), Steps()
    result = busy.apply(whole, steps.opener(counting))
    assert result.fingerprint_ok and not result.resumed
    busy.after, busy.skipped = docker_hashes(whole), result.skipped
    busy.renames, busy.steps = counting.renames, steps.done
    shutil.rmtree(whole)
    return busy


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Busy]:
    """On a tmpfs where there is one (test_crash.scenario_of says why)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = Path(tempfile.mkdtemp(prefix="regplan-busy-crash-", dir=shm))
    else:
        base = tmp_path_factory.mktemp("busy-crash")
    try:
        yield _busy(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_apply_skips_for_each_reason(busy: Busy) -> None:
    """What the kills below interrupt: an apply that moves some targets and skips others,
    changed since the plan, no longer selected, and needed by the untagged push."""
    whys = dict(busy.skipped)
    assert whys[tag_dir("team/app", "v1")] == CHANGED
    assert UNSELECTED in whys.values()
    assert any(why.startswith("needed by sandbox/y@") for why in whys.values()), whys
    assert busy.renames >= 5
    assert {"prepare", "write", "append", "move_out"} <= set(busy.steps)


def check_finishes(busy: Busy, root: Path) -> None:
    """Run again where it was killed: it finishes with the skips of a whole apply, the
    tree a whole apply leaves, every image whole; a rollback gives the pushed tree."""
    records = apply.records(FsStorage.locate(root))
    if records and records[0].state == State.APPLIED:  # killed once it was done
        [record] = records
    else:
        result = busy.apply(root)
        assert result.resumed == bool(records)
        assert result.fingerprint_ok, result.changed
        assert sorted(result.skipped) == sorted(busy.skipped)
        [record] = apply.records(FsStorage.locate(root))
        assert record.apply_id == result.apply_id
    assert docker_hashes(root) == busy.after
    assert broken_images(FsStorage.locate(root).v2) == []
    apply.rollback(storage=FsStorage.locate(root), apply_id=record.apply_id, now=NOW)
    assert docker_hashes(root) == busy.before


@pytest.mark.parametrize("at", ["first", "middle", "last"])
def test_kill_at_a_move_of_an_apply_that_skips(busy: Busy, at: str) -> None:
    rename = {"first": 1, "middle": busy.renames // 2, "last": busy.renames}[at]
    root = busy.copy(f"rename-{at}")
    assert_killed(in_child(lambda: busy.apply(root, on_disk(KillingDisk(rename)))))
    check_finishes(busy, root)


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_kill_an_apply_that_skips_at_each_kind_of_step(busy: Busy, after: bool) -> None:
    """Before (or just after) its first record, the plan's copy, what it decided to skip,
    each journal line, a batch of moves, a pruned folder, its last record."""
    points = kill_points(busy.steps)
    for at in points:
        root = busy.copy(f"step-{at}-{after}")
        kill = functools.partial(busy.apply, root, Steps(at, after=after).opener())
        assert_killed(in_child(kill))
        check_finishes(busy, root)
        shutil.rmtree(root)
    assert len(points) >= 6


def test_kill_in_the_walk_that_decides_again(busy: Busy) -> None:
    """Killed while it reads the tree to decide the plan again, before anything is
    written: no record, the tree as pushed; run again, it skips the same."""
    root = busy.copy("walk")

    def killer(done: int, total: int) -> None:
        die()

    assert_killed(in_child(lambda: busy.apply(root, scan_progress=killer)))
    assert apply.records(FsStorage.locate(root)) == []
    assert docker_hashes(root) == busy.before
    check_finishes(busy, root)


def test_a_push_between_the_kill_and_the_run_again_stays_whole(busy: Busy) -> None:
    """Killed at its first rename (records written, nothing moved); the registry, started
    meanwhile, takes a push of team/app's untagged build1 (its blobs approved, not yet
    moved) as late/push:1. The apply run again must leave that image whole."""
    build1 = image([BASE, {"app/app-build1-0.txt": b"app-build1 file 0\n" * 64}])
    top = blob_dir(build1.layers[-1].digest)
    assert top not in dict(busy.skipped)
    root = busy.copy("late-push")
    assert_killed(in_child(lambda: busy.apply(root, on_disk(KillingDisk(1)))))
    v2 = FsStorage.locate(root).v2
    assert (v2 / top / "data").is_file()
    Registry(v2=v2, clock=LATER + 3600).push("late/push", build1, "1")
    busy.apply(root)
    assert broken_images(v2) == []


def test_kill_in_the_walk_after_the_moves(busy: Busy) -> None:
    """Killed while it reads the tree once its targets moved (the final check): run
    again, it finishes with the same skips."""
    root = busy.copy("final-walk")
    disk = KillingDisk()

    def killer(done: int, total: int) -> None:
        if disk.renames > 0:
            die()

    assert_killed(in_child(lambda: busy.apply(root, on_disk(disk), scan_progress=killer)))
    [record] = apply.records(FsStorage.locate(root))
    assert record.state == State.APPLYING
    check_finishes(busy, root)


def _pushes_since_the_plan(v2: Path) -> None:
    """What the registry's clients push between plan and apply (as ``_busy``)."""
    reg = Registry(v2=v2, clock=LATER)
    reg.push("team/app", image([BASE, {"v1-again": b"again"}]), "v1")
    reg.push("sandbox/x", image([BASE, {"app/old-2020-0.txt": b"old-2020 file 0\n" * 64}]), "1")
    reg.push("sandbox/y", image([BASE, {"app/app-build0-0.txt": b"app-build0 file 0\n" * 64}]))


class InBucket:
    """The same busy registry in a memory bucket (each store's flavour): planned, then
    pushed to (the files the pushes wrote or changed put as objects, as the registry's
    object-store drivers write them), and one whole apply of it, rolled back."""

    def __init__(self, flavour: str, base: Path) -> None:
        fs = base / "fs"
        build_demo(fs)
        self.reg = InMemory.of(flavour, base, fs)
        self.reg.clock.advance(60)
        self.plan = self.reg.plan(SELECTION, base / "p.json")
        planned = content_hashes(fs / "docker")
        _pushes_since_the_plan(FsStorage.locate(fs).v2)
        self.reg.clock.advance(60)
        for rel, digest in sorted(content_hashes(fs / "docker").items()):
            if digest not in ("dir", planned.get(rel)):
                data = (fs / "docker" / rel).read_bytes()
                self.reg.bucket.put(self.reg.storage.key(f"docker/{rel}"), data)
        self.base, self.before = base, self.reg.objects()
        self.batch = DELETE_BATCH[flavour]
        counting = Counting(self.reg.bucket, batch=self.batch)
        whole = self.apply(counting)
        self.skipped, self.after, self.counts = whole.skipped, self.reg.objects(), counting.writes()
        self.rollback()
        assert self.reg.objects() == self.before

    def apply(self, via: Bucket | None = None) -> ApplyResult:
        self.reg.clock.advance(1)
        return self.reg.apply(self.plan, via=via, break_lock=True)

    def rollback(self) -> None:
        self.reg.clock.advance(1)
        self.reg.rollback(self.reg.history()[-1].apply_id, break_lock=True)

    def whole(self) -> list[str]:
        return bucket_broken(self.reg, self.base / "check")


def bucket_broken(reg: InMemory, out: Path) -> list[str]:
    """broken_images of a bucket's tree, written out to the folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    prefix = reg.storage.key("docker/")
    for key, stored in reg.bucket.snapshot(prefix).items():
        path = out / "docker" / key.removeprefix(prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(stored.data)
    return broken_images(FsStorage.locate(out).v2)


SELECTION = attrs.evolve(selection(("team/app:v1", "team/app:v2", "old/repo"), ("*",)), gc=True)
"""The filesystem's request less --prune (a bucket has no empty folders)."""
DELETE_BATCH = {"s3": 50, "azure": 20, "gcs": 1}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_an_apply_that_skips_killed_at_any_bucket_request_finishes(
    flavour: str, tmp_path: Path
) -> None:
    """On object storage: killed at every write request an apply that skips makes (copies
    at the first, a middle and the last), before the store did it and after: the same
    apply again skips the same, leaves every object a whole apply leaves and every image
    whole; a rollback then gives the pushed bucket."""
    busy = InBucket(flavour, tmp_path)
    assert dict(busy.skipped)[tag_dir("team/app", "v1")] == CHANGED
    busy.apply()
    assert busy.whole() == []  # every image of the bucket a whole apply leaves
    busy.rollback()
    for request in every(busy.counts, lambda kind, n: kind == "copy" or n > 20):
        for after in (False, True):
            with pytest.raises(Killed):
                busy.apply(Crashing(busy.reg.bucket, at=request, after=after, batch=busy.batch))
            expire_lease(busy.reg.bucket)
            try:
                result = busy.apply()
                assert sorted(result.skipped) == sorted(busy.skipped), (request, after)
            except StalePlanError as e:  # killed once it had finished
                assert "already applied" in str(e), (request, after)
            assert busy.reg.objects() == busy.after, (request, after)  # whole, as checked
            busy.rollback()
            assert busy.reg.objects() == busy.before, (request, after)


def test_a_repository_half_moved_by_a_killed_apply_is_moved_whole_by_the_run_again(
    tmp_path: Path,
) -> None:
    """GCS: killed just after its first delete request (one key of old/repo, copied into
    the quarantine, deleted); run again, old/repo goes whole and every image is whole."""
    busy = InBucket("gcs", tmp_path)
    with pytest.raises(Killed):
        busy.apply(Crashing(busy.reg.bucket, at=("delete", 1), after=True, batch=busy.batch))
    expire_lease(busy.reg.bucket)
    result = busy.apply()
    assert result.resumed and result.fingerprint_ok
    assert busy.whole() == []
    assert repo_dir("old/repo") not in dict(result.skipped)
    assert busy.reg.objects() == busy.after


def test_a_large_repository_half_deleted_on_s3_is_moved_whole_by_the_run_again(
    tmp_path: Path,
) -> None:
    """S3 (50 keys a delete request here, 1,000 on AWS): ``--image team0/svc0``, a
    repository of some 300 keys, killed just after its first delete request; run again,
    the repository goes whole and what stays is whole. (No push at all: any apply on
    object storage run again after such a kill.)"""
    build_scale(tmp_path / "fs", repos=2, tags=30)
    reg = InMemory.of("s3", tmp_path, tmp_path / "fs")
    reg.clock.advance(60)
    plan = reg.plan(selection(("team0/svc0",)), tmp_path / "p.json")
    reg.clock.advance(1)
    with pytest.raises(Killed):
        reg.apply(plan, via=Crashing(reg.bucket, at=("delete", 1), after=True, batch=50))
    expire_lease(reg.bucket)
    reg.clock.advance(1)
    result = reg.apply(plan, break_lock=True)
    assert result.resumed and result.skipped == ()
    assert not any("/team0/svc0/" in key for key in reg.objects())
    assert bucket_broken(reg, tmp_path / "check") == []


def test_a_plan_with_prune_made_on_a_bucket_applies(tmp_path: Path) -> None:
    """``--untagged '*' --prune`` planned on the sample registry in a memory bucket (the
    command says --prune has nothing to do there) applies, as the plan without it does."""
    build_demo(tmp_path / "fs")
    reg = InMemory.of("s3", tmp_path, tmp_path / "fs")
    plan = reg.plan(selection((), ("*",), prune=True), tmp_path / "p.json")
    assert reg.apply(plan).fingerprint_ok
