"""Faults injected at the filesystem's rename (the one move) and write (the journal's and
the state file's), by a wrapping Disk given to the store: nothing is patched.

Each must end with its exit code, a one-line message, and nothing lost: the
partial state rolls back to the original tree, or a re-run finishes it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from regplan import apply
from regplan.changes.records import State
from regplan.cli import cli
from regplan.errors import ApplyError
from regplan.plans.signing import load_trusted
from regplan.storage.fs.fsops import Disk
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import (
    KEY,
    NOW,
    FaultyDisk,
    docker_hashes,
    on_disk,
    selection,
    write_plan_file,
    write_pub,
)


def apply_on(plan: Path, pub: Path, disk: Disk) -> str:
    """``regplan apply`` over a store with ``disk``: the error's message (one is expected)."""

    with pytest.raises(ApplyError) as e:
        apply.apply_plan(
            plan_path=plan,
            trusted=[load_trusted(pub)],
            root=None,
            required=1,
            now=NOW,
            opener=on_disk(disk),
        )
    assert e.value.exit_code == 1
    return str(e.value)


@pytest.fixture
def setup(demo_root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    plan = tmp_path / "p.json"
    write_plan_file(demo_root, selection(("team/app:v1", "old/repo"), ("*",), prune=True), plan)
    pub = write_pub(KEY, tmp_path / "k.pub")
    return demo_root, plan, pub


def cli_apply(plan: Path, pub: Path) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["apply", str(plan), "--trust", str(pub)])
    return r.exit_code, r.output


@pytest.mark.parametrize(
    ("err", "message"),
    [
        (errno.EXDEV, "the quarantine is on another filesystem (regplan never copies)"),
        (errno.ENOSPC, "(disk full)"),
        (errno.EACCES, "injected EACCES"),
    ],
)
@pytest.mark.parametrize("at", [1, 9])
def test_move_fails_midway(
    setup: tuple[Path, Path, Path],
    err: int,
    message: str,
    at: int,
) -> None:
    root, plan, pub = setup
    original = docker_hashes(root)
    out = apply_on(plan, pub, FaultyDisk(err, rename_at=at))
    assert "\n" not in out and out.startswith("could not move ")
    assert message in out and f"{at - 1} moved so far" in out
    storage = FsStorage.locate(root)
    [record] = apply.records(storage)
    assert record.state == State.APPLYING
    apply.rollback(storage=storage, apply_id=record.apply_id, now=NOW)
    assert docker_hashes(root) == original


def test_rerun_finishes_after_a_failed_move(setup: tuple[Path, Path, Path]) -> None:
    _, plan, pub = setup
    apply_on(plan, pub, FaultyDisk(errno.ENOSPC, rename_at=5))
    code, out = cli_apply(plan, pub)
    assert code == 0, out
    assert out.startswith("Resumed and finished plan ")


@pytest.mark.parametrize("at", [1, 2, 3])
def test_disk_full_while_writing_journal_or_state(setup: tuple[Path, Path, Path], at: int) -> None:
    """Write 1 is the state file, 2 the first journal record, 3 the record after the moves."""
    root, plan, pub = setup
    original = docker_hashes(root)
    out = apply_on(plan, pub, FaultyDisk(errno.ENOSPC, write_at=at))
    assert "\n" not in out and "(disk full)" in out and out.startswith("cannot write ")
    storage = FsStorage.locate(root)
    records = apply.records(storage)
    if at == 1:
        assert records == [] and docker_hashes(root) == original  # nothing began
        return
    [record] = records
    if at == 2:
        assert docker_hashes(root) == original  # the journal write comes before any move
    apply.rollback(storage=storage, apply_id=record.apply_id, now=NOW)
    assert docker_hashes(root) == original


def test_rollback_after_purge_is_a_clear_error(setup: tuple[Path, Path, Path]) -> None:
    root, plan, pub = setup
    assert cli_apply(plan, pub)[0] == 0
    storage = FsStorage.locate(root)
    [record] = apply.records(storage)
    runner = CliRunner()
    r = runner.invoke(cli, ["purge", record.apply_id, "--root", str(root)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["rollback", record.apply_id, "--root", str(root)])
    assert r.exit_code == 1
    gone = "its quarantine is gone, nothing to restore"
    assert r.output == f"Error: apply {record.apply_id} was purged: {gone}\n"


def test_prune_failure_is_one_line_and_rolls_back(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An rmdir that fails while pruning (here: permission) ends like any other fault."""
    root, plan, pub = setup
    original = docker_hashes(root)
    real_rmdir = os.rmdir

    def refuse(path: str, **kwargs: Any) -> None:
        if path == "_uploads":
            raise OSError(errno.EACCES, "injected EACCES")
        real_rmdir(path, **kwargs)

    monkeypatch.setattr(os, "rmdir", refuse)
    code, out = cli_apply(plan, pub)
    assert code == 1
    assert out.count("\n") == 1 and out.startswith("Error: could not remove empty folder ")
    monkeypatch.undo()
    storage = FsStorage.locate(root)
    [record] = apply.records(storage)
    apply.rollback(storage=storage, apply_id=record.apply_id, now=NOW)
    assert docker_hashes(root) == original
