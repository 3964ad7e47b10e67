"""Crash safety: SIGKILL an apply or a rollback at every kind of step, then run it again.

Each kill happens in a child forked from this (warm) test process: the child runs the
command through its entry point (``apply.apply_plan`` with an ``opener``, the
transaction's ``rollback`` with a store) over wrapping objects that kill their own
process: a ``KillingDisk`` (the store's one rename primitive, fsops.Disk) at a chosen
rename, on a tree large enough for several batches; a store wrapped by ``Steps`` before
or just after a chosen step (a call that changes the storage: a record, a journal
line, a batch of moves, a pruned folder), on a small tree, at each kind of step; a
scan progress callback inside a walk while a forked share walks beside it. No test
hook lives in regplan itself, and nothing is patched. A timed kill from outside covers
points in between. The parent checks the child was SIGKILLed, then runs the command
again here and checks the tree.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import attrs
import pytest

from regplan import apply
from regplan.changes import transaction
from regplan.changes.records import State
from regplan.changes.transaction import ApplyResult
from regplan.demo.samples import build_scale
from regplan.plans import signing
from regplan.progress import Progress
from regplan.storage import location
from regplan.storage.fs.fsops import Disk
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.fsstore import FsStore
from regplan.storage.location import Location
from regplan.storage.seam import Store
from tests.helpers import (
    KEY,
    NOW,
    alone,
    docker_hashes,
    on_disk,
    plant_leftovers,
    selection,
    write_plan_file,
    write_pub,
)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillingDisk(Disk):
    """A disk that kills its own process at its ``rename_at``-th rename (0: never);
    it counts them either way."""

    def __init__(self, rename_at: int = 0) -> None:
        self.rename_at = rename_at
        self.renames = 0

    def rename(self, src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        self.renames += 1
        if self.renames == self.rename_at:
            die()
        super().rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


MUTATIONS = frozenset(
    {"prepare", "write", "append", "move_out", "move_back", "remove_folders", "make_folders"}
    | {"delete"}
)
"""The calls of a seam.Store that change the storage: the steps of a transaction."""


class Steps:
    """Stores that note their steps, and kill their process before (or, with ``after``,
    just after) step number ``at`` (1 for the first; 0: never)."""

    def __init__(self, at: int = 0, *, after: bool = False) -> None:
        self.at, self.after = at, after
        self.done: list[str] = []

    def store(self, inner: Store) -> Store:
        steps = self

        class Stepping:
            def __getattr__(self, name: str) -> Any:
                real = getattr(inner, name)
                if name not in MUTATIONS:
                    return real

                def step(*args: Any, **kwargs: Any) -> Any:
                    steps.done.append(name)
                    last = len(steps.done) == steps.at
                    if last and not steps.after:
                        die()
                    result = real(*args, **kwargs)
                    if last:
                        die()
                    return result

                return step

        return cast(Store, Stepping())

    def opener(self, disk: Disk | None = None) -> Callable[[Location], Store]:
        def opener(storage: Location) -> Store:
            assert isinstance(storage, FsStorage)
            return self.store(FsStore(storage, disk))

        return opener


def kill_points(steps: Sequence[str]) -> list[int]:
    """The steps worth a kill: each kind of step (by the step before it) where it first
    and where it last comes (pruning, say, is many alike steps)."""
    at: dict[tuple[str, str], list[int]] = {}
    for i, pair in enumerate(zip(["", *steps], steps, strict=False), 1):
        at.setdefault(pair, []).append(i)
    return sorted({i for found in at.values() for i in (found[0], found[-1])})


def in_child(fn: Callable[[], object]) -> int:
    """Run ``fn`` in a child forked from this process; its wait status.

    No thread may be alive here (a fork copies only the calling thread, and a lock
    another one held stays held in the child). The child leaves with ``os._exit``: it
    never runs pytest's exit handlers or flushes the parent's buffers."""
    alone()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 0
        try:
            fn()
        except BaseException:  # noqa: BLE001 - reported, and the exit status says so
            os.write(2, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def assert_killed(status: int) -> None:
    assert os.WIFSIGNALED(status), (
        f"the child was not killed: exit {os.waitstatus_to_exitcode(status)}"
    )
    assert os.WTERMSIG(status) == signal.SIGKILL


class Scenario:
    """A registry with leftovers of a killed write, its plan (every untagged manifest,
    pruned), and the trees before and after a whole apply."""

    def __init__(self, base: Path, *, repos: int, tags: int) -> None:
        self.base = base
        self.original = base / "original"
        build_scale(self.original, repos=repos, tags=tags, pushes=3)
        plant_leftovers(self.original, (NOW - timedelta(days=2)).timestamp())
        self.plan = base / "crash.plan.json"
        sel = attrs.evolve(selection((), ("*",), prune=True), leftovers_older_than="1d")
        plan = write_plan_file(self.original, sel, self.plan)
        self.targets = len(plan.targets)
        self.leftovers = sum(t.kind.is_file for t in plan.targets)
        self.trusted = [signing.load_trusted(write_pub(KEY, base / "k.pub"))]
        self.before = docker_hashes(self.original)
        self.made: list[Path] = []
        self.applied = self.copy("applied")
        counting, steps = KillingDisk(), Steps()
        self.apply_id = self.apply(self.applied, steps.opener(counting)).apply_id
        self.renames, self.steps = counting.renames, steps.done
        """The renames and the steps (seam.Store calls that change it) of a whole apply."""
        self.after = docker_hashes(self.applied)
        back = self.copy_of(self.applied, "rolled-back")
        counting, steps = KillingDisk(), Steps()
        self.rollback(back, store=steps.store(FsStore(FsStorage.locate(back), counting)))
        self.rollback_renames, self.rollback_steps = counting.renames, steps.done
        assert docker_hashes(back) == self.before
        self.made.remove(self.applied)
        self.forget()

    def copy(self, name: str) -> Path:
        return self.copy_of(self.original, name)

    def copy_of(self, src: Path, name: str) -> Path:
        dst = self.base / name
        shutil.copytree(src, dst, symlinks=True)
        self.made.append(dst)
        return dst

    def forget(self) -> None:
        """Remove the copies made since the scenario was built (the trees held in memory)."""
        for tree in self.made:
            shutil.rmtree(tree)
        self.made.clear()

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
            scan_progress=scan_progress,
            registry="stopped (test)",
            opener=opener or location.store,
        )

    def rollback(self, root: Path, disk: Disk | None = None, store: Store | None = None) -> None:
        storage = FsStorage.locate(root)
        transaction.rollback(store or FsStore(storage, disk), self.apply_id, now=NOW)


@contextlib.contextmanager
def scenario_of(factory: pytest.TempPathFactory, *, repos: int, tags: int) -> Iterator[Scenario]:
    """On a tmpfs where there is one: a SIGKILL leaves what the kernel was told either way
    (fsync matters for a power cut, which no test here makes), and on this machine's
    disk each tree's copy took 2 s instead of 0.5 s."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = Path(tempfile.mkdtemp(prefix="regplan-crash-", dir=shm))
    else:
        base = factory.mktemp("crash")
    try:
        yield Scenario(base, repos=repos, tags=tags)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Large enough for several batches of moves (512 targets each)."""
    with scenario_of(tmp_path_factory, repos=8, tags=20) as s:
        yield s


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Small enough to kill at each kind of step."""
    with scenario_of(tmp_path_factory, repos=2, tags=5) as s:
        yield s


@pytest.fixture(autouse=True)
def _forget(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("scenario", "small"):
        if name in request.fixturenames:
            request.getfixturevalue(name).forget()


def check_resume_and_rollback(scenario: Scenario, killed: Path) -> None:
    """From the killed state: resume gives the clean result; rollback the original."""
    storage = FsStorage.locate(killed)
    [record] = apply.records(storage)
    assert record.state == State.APPLYING
    second = scenario.copy_of(killed, killed.name + "-rollback")

    resumed = scenario.apply(killed)
    assert resumed.resumed and resumed.fingerprint_ok
    assert resumed.apply_id == record.apply_id
    assert docker_hashes(killed) == scenario.after

    apply.rollback(storage=FsStorage.locate(second), apply_id=record.apply_id, now=NOW)
    assert docker_hashes(second) == scenario.before


def test_the_plan_is_big_enough(scenario: Scenario) -> None:
    assert scenario.targets > 2000
    assert scenario.leftovers == 2  # a file target moves at some kill points too
    assert scenario.renames >= scenario.targets - 100  # empty folders are pruned, not moved
    assert scenario.rollback_renames == scenario.renames


MOVES: dict[str, Callable[[Scenario], int]] = {
    "first-move": lambda s: 1,
    "middle": lambda s: s.renames // 2,
    "last-move": lambda s: s.renames,
}


@pytest.mark.parametrize("point", MOVES)
def test_kill_at_a_move(scenario: Scenario, point: str) -> None:
    root = scenario.copy(f"kill-{point}")
    disk = KillingDisk(MOVES[point](scenario))
    assert_killed(in_child(lambda: scenario.apply(root, on_disk(disk))))
    check_resume_and_rollback(scenario, root)


def test_kill_after_last_move_before_state_is_written(scenario: Scenario) -> None:
    root = scenario.copy("kill-state")
    assert scenario.steps[-1] == "write"  # the last record: applied
    last = Steps(len(scenario.steps)).opener()
    assert_killed(in_child(lambda: scenario.apply(root, last)))
    check_resume_and_rollback(scenario, root)


ROLLBACK_MOVES: dict[str, Callable[[Scenario], int]] = {
    "first-move": lambda s: 1,
    "middle": lambda s: s.rollback_renames // 2,
    "last-move": lambda s: s.rollback_renames,
}


def check_rollback_finishes(scenario: Scenario, killed: Path) -> None:
    [record] = apply.records(FsStorage.locate(killed))
    assert record.state == State.ROLLING_BACK
    scenario.rollback(killed)
    [record] = apply.records(FsStorage.locate(killed))
    assert record.state == State.ROLLED_BACK
    assert docker_hashes(killed) == scenario.before


@pytest.mark.parametrize("point", ROLLBACK_MOVES)
def test_kill_a_rollback_at_a_move(scenario: Scenario, point: str) -> None:
    """A rollback killed while it moves back: run again, it finishes the job."""
    root = scenario.copy_of(scenario.applied, f"kill-rollback-{point}")
    disk = KillingDisk(ROLLBACK_MOVES[point](scenario))
    assert_killed(in_child(lambda: scenario.rollback(root, disk)))
    check_rollback_finishes(scenario, root)


def test_kill_a_rollback_before_its_last_state(scenario: Scenario) -> None:
    root = scenario.copy_of(scenario.applied, "kill-rollback-state")
    assert scenario.rollback_steps[-1] == "write"  # the last record: rolled back
    store = Steps(len(scenario.rollback_steps)).store(FsStore(FsStorage.locate(root)))
    assert_killed(in_child(lambda: scenario.rollback(root, store=store)))
    check_rollback_finishes(scenario, root)


def check_killed_apply(s: Scenario, root: Path) -> None:
    """Wherever an apply was killed, running it again finishes it, and a rollback from
    where it was killed gives the original tree."""
    records = apply.records(FsStorage.locate(root))
    if not records:  # killed before its first record: nothing moved
        assert docker_hashes(root) == s.before
        again = s.apply(root)
        assert not again.resumed and again.fingerprint_ok
        assert docker_hashes(root) == s.after
        return
    [record] = records
    if record.state == State.APPLIED:  # killed once it was done
        assert docker_hashes(root) == s.after
        apply.rollback(storage=FsStorage.locate(root), apply_id=record.apply_id, now=NOW)
        assert docker_hashes(root) == s.before
        return
    check_resume_and_rollback(s, root)


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_kill_an_apply_at_each_kind_of_step(small: Scenario, after: bool) -> None:
    """Killed before (or just after) each kind of step the transaction asks of the
    store: its first record, the plan's copy, each journal line, a batch of moves,
    pruning a folder, the last record."""
    points = kill_points(small.steps)
    assert {"prepare", "write", "append", "move_out", "remove_folders"} <= set(small.steps)
    for at in points:
        root = small.copy(f"step-{at}")
        kill = functools.partial(small.apply, root, Steps(at, after=after).opener())
        assert_killed(in_child(kill))
        check_killed_apply(small, root)
        small.forget()
    assert len(points) >= 10


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_kill_a_rollback_at_each_step(small: Scenario, after: bool) -> None:
    """Killed before (or just after) each step of a rollback: running it again gives
    the original tree."""
    assert {"write", "append", "make_folders", "move_back", "delete"} <= set(small.rollback_steps)
    for at in range(1, len(small.rollback_steps) + 1):
        root = small.copy_of(small.applied, f"rollback-step-{at}")
        store = Steps(at, after=after).store(FsStore(FsStorage.locate(root)))
        assert_killed(in_child(functools.partial(small.rollback, root, store=store)))
        [record] = apply.records(FsStorage.locate(root))
        if record.state != State.ROLLED_BACK:
            small.rollback(root)
        assert docker_hashes(root) == small.before, (at, small.rollback_steps[at - 1])
        small.forget()


class WalkKiller:
    """A scan progress callback that kills its process inside the first walk before
    (``final=False``) or after (``final=True``) the apply's first rename, noting how
    many forked children (the other shares) walk beside it."""

    def __init__(self, disk: KillingDisk, note: Path, *, final: bool) -> None:
        self.disk, self.note, self.final = disk, note, final

    def __call__(self, done: int, total: int) -> None:
        if (self.disk.renames > 0) != self.final:
            return
        pid = os.getpid()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        self.note.write_text(str(len(children)))
        die()


def walk_in_shares() -> None:
    """Walk in two shares, as on a large registry: a forked child walks beside."""
    os.environ["REGPLAN_JOBS"] = "2"  # in the child only


def test_kill_in_the_freshness_walk_changes_nothing(scenario: Scenario) -> None:
    """Killed while it checks the tree, before anything moves: no record, the tree as it
    was, the lock free, and a re-run applies the plan."""
    root = scenario.copy("kill-first-walk")
    disk = KillingDisk()
    killer = WalkKiller(disk, root.parent / "first-walk.children", final=False)

    def run() -> None:
        walk_in_shares()
        scenario.apply(root, on_disk(disk), scan_progress=killer)

    assert_killed(in_child(run))
    assert killer.note.read_text() == "1"
    assert apply.records(FsStorage.locate(root)) == []
    assert docker_hashes(root) == scenario.before
    again = scenario.apply(root)
    assert not again.resumed and again.fingerprint_ok
    assert docker_hashes(root) == scenario.after


def test_kill_in_the_final_walk_resumes_and_rolls_back(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in the check after the moves, while a forked share still walks."""
    monkeypatch.setenv("REGPLAN_JOBS", "2")  # the in-process resume and rollback too
    root = scenario.copy("kill-final-walk")
    disk = KillingDisk()
    killer = WalkKiller(disk, root.parent / "final-walk.children", final=True)
    assert_killed(in_child(lambda: scenario.apply(root, on_disk(disk), scan_progress=killer)))
    assert killer.note.read_text() == "1"
    check_resume_and_rollback(scenario, root)


def journal_lines(root: Path) -> int:
    applies = root / "regplan-state" / "applies"
    journals = list(applies.glob("*/journal")) if applies.is_dir() else []
    return sum(j.read_bytes().count(b"\n") for j in journals)


@pytest.mark.parametrize("records", [1, 3, 8, 20])
def test_kill_while_running(scenario: Scenario, records: int) -> None:
    """SIGKILL from outside once the journal holds ``records`` records: wherever the
    apply is by then (renames, fsyncs, prune, the final walk)."""
    root = scenario.copy(f"kill-running-{records}")
    alone()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            scenario.apply(root)
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    while journal_lines(root) < records and time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            pid = 0  # it finished first (and is reaped)
            break
        time.sleep(0.001)
    if pid:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    [record] = apply.records(FsStorage.locate(root))
    if record.state == State.APPLIED:  # it finished before the kill landed
        assert docker_hashes(root) == scenario.after
        return
    check_resume_and_rollback(scenario, root)
