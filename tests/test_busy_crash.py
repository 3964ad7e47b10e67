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
from regplan.demo.samples import BASE, Registry, build_demo, image
from regplan.plans import signing
from regplan.progress import Progress
from regplan.scan.layout import blob_dir, tag_dir
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.location import Location
from regplan.storage.seam import Store
from tests.helpers import (
    KEY,
    NOW,
    broken_images,
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
