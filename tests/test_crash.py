"""Crash safety: SIGKILL an apply at arbitrary points, then resume or roll back.

The apply runs in a subprocess through a small wrapper that kills its own
process (SIGKILL) at a chosen rename of the store's Disk, when the store saves a
chosen state, or inside a walk while forked shares run; no test hook lives in
regplan itself. A timed kill covers points in
between.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from regplan import apply
from regplan.changes.records import State
from regplan.demo.samples import build_scale
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import (
    KEY,
    NOW,
    docker_hashes,
    plant_leftovers,
    selection,
    write_plan_file,
    write_pub,
)

WRAPPER = """
import os, signal, sys
from regplan.storage.fs.fsops import Disk
from regplan.storage.fs.fsstore import FsStore
kill_rename = int(os.environ.get("KILL_AT_RENAME", "0"))
kill_state = os.environ.get("KILL_AT_STATE")
calls = 0
real_rename, real_save = Disk.rename, FsStore.save
def rename(self, src, dst, **fds):
    global calls
    calls += 1
    if calls == kill_rename:
        os.kill(os.getpid(), signal.SIGKILL)
    real_rename(self, src, dst, **fds)
def save(self, record):
    if kill_state and record.state.value == kill_state:
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(self, record)
Disk.rename, FsStore.save = rename, save
import regplan.scan.parallel as par
kill_walk = int(os.environ.get("KILL_IN_WALK", "0"))
walks = 0
real_run = par.run
def run(share, n, progress=None):
    global walks
    walks += 1
    if walks != kill_walk:
        return real_run(share, n, progress)
    def dying(k, n_, p):
        if k == 0:  # the parent, while its forked shares walk
            with open(os.environ["WALK_SHARES_FILE"], "w") as f:
                f.write(str(n_))
            os.kill(os.getpid(), signal.SIGKILL)
        return share(k, n_, p)
    return real_run(dying, n, progress)
par.run = run
from regplan.cli import cli
cli(sys.argv[1:], prog_name="regplan")
"""


class Scenario:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.original = base / "original"
        build_scale(self.original, repos=8, tags=20, pushes=3)
        plant_leftovers(self.original, (NOW - timedelta(days=2)).timestamp())
        self.plan = base / "crash.plan.json"
        sel = attrs.evolve(selection((), ("*",), prune=True), leftovers_older_than="1d")
        plan = write_plan_file(self.original, sel, self.plan)
        self.targets = len(plan.targets)
        self.leftovers = sum(t.kind.is_file for t in plan.targets)
        self.pub = write_pub(KEY, base / "k.pub")
        self.before = docker_hashes(self.original)
        clean = self.copy("clean")
        self.run(clean)
        self.after = docker_hashes(clean)

    def copy(self, name: str) -> Path:
        dst = self.base / name
        shutil.copytree(self.original, dst, symlinks=True)
        return dst

    def run(self, root: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                WRAPPER,
                "apply",
                str(self.plan),
                "--trust",
                str(self.pub),
                "--root",
                str(root),
                "-q",
                "--registry-stopped",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=300,
            check=False,
        )


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    yield Scenario(tmp_path_factory.mktemp("crash"))


def check_resume_and_rollback(scenario: Scenario, killed: Path, **env: str) -> None:
    """From the killed state: resume gives the clean result; rollback the original."""
    storage = FsStorage.locate(killed)
    [record] = apply.records(storage)
    assert record.state == State.APPLYING
    second = killed.parent / (killed.name + "-rollback")
    shutil.copytree(killed, second, symlinks=True)

    resumed = scenario.run(killed, **env)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed and finished" in resumed.stdout
    assert docker_hashes(killed) == scenario.after

    apply.rollback(storage=FsStorage.locate(second), apply_id=record.apply_id, now=NOW)
    assert docker_hashes(second) == scenario.before


def test_the_plan_is_big_enough(scenario: Scenario) -> None:
    assert scenario.targets > 2000
    assert scenario.leftovers == 2  # a file target moves at some kill points too


@pytest.mark.parametrize("point", ["first-move", "middle", "last-move"])
def test_kill_at_a_move(scenario: Scenario, point: str) -> None:
    moves = {"first-move": 1, "middle": scenario.targets // 2, "last-move": scenario.targets - 50}
    root = scenario.copy(f"kill-{point}")
    r = scenario.run(root, KILL_AT_RENAME=str(moves[point]))
    assert r.returncode == -signal.SIGKILL
    check_resume_and_rollback(scenario, root)


def test_kill_after_last_move_before_state_is_written(scenario: Scenario) -> None:
    root = scenario.copy("kill-state")
    r = scenario.run(root, KILL_AT_STATE="applied")
    assert r.returncode == -signal.SIGKILL
    check_resume_and_rollback(scenario, root)


SHARES = {"REGPLAN_JOBS": "2"}
"""Walk in two shares, as on a large registry: a forked child walks beside the apply."""


def test_kill_in_the_freshness_walk_changes_nothing(scenario: Scenario) -> None:
    """Killed while it checks the tree, before anything moves: no record, the tree as it
    was, the lock free, and a re-run applies the plan."""
    root = scenario.copy("kill-first-walk")
    shares = root.parent / "kill-first-walk.shares"
    r = scenario.run(root, KILL_IN_WALK="1", WALK_SHARES_FILE=str(shares), **SHARES)
    assert r.returncode == -signal.SIGKILL
    assert shares.read_text() == "2"
    assert apply.records(FsStorage.locate(root)) == []
    assert docker_hashes(root) == scenario.before
    again = scenario.run(root, **SHARES)
    assert again.returncode == 0, again.stderr
    assert docker_hashes(root) == scenario.after


def test_kill_in_the_final_walk_resumes_and_rolls_back(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in the check after the moves, while a forked share still walks."""
    monkeypatch.setenv("REGPLAN_JOBS", "2")  # the in-process rollback too
    root = scenario.copy("kill-final-walk")
    shares = root.parent / "kill-final-walk.shares"
    r = scenario.run(root, KILL_IN_WALK="2", WALK_SHARES_FILE=str(shares), **SHARES)
    assert r.returncode == -signal.SIGKILL
    assert shares.read_text() == "2"
    check_resume_and_rollback(scenario, root, **SHARES)


def journal_lines(root: Path) -> int:
    applies = root / "regplan-state" / "applies"
    journals = list(applies.glob("*/journal")) if applies.is_dir() else []
    return sum(j.read_bytes().count(b"\n") for j in journals)


@pytest.mark.parametrize("records", [1, 3, 8, 20])
def test_kill_while_running(scenario: Scenario, records: int) -> None:
    """SIGKILL once the journal holds ``records`` records: wherever the apply is by then
    (renames, fsyncs, prune, the final walk)."""
    root = scenario.copy(f"kill-running-{records}")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRAPPER,
            "apply",
            str(scenario.plan),
            "--trust",
            str(scenario.pub),
            "--root",
            str(root),
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while journal_lines(root) < records and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [record] = apply.records(FsStorage.locate(root))
    if record.state == State.APPLIED:  # it finished before the kill landed
        assert docker_hashes(root) == scenario.after
        return
    check_resume_and_rollback(scenario, root)
