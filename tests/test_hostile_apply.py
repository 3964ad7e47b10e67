"""Damaged and hostile storage, part 2: apply, rollback and purge never leave the root.

An attacker who can write the storage plants links between regplan's steps;
each test checks a folder outside the root is untouched (content, mode, owner)
and that the storage ends applied, or byte for byte as it was.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan import apply
from regplan.changes import transaction
from regplan.changes.records import State
from regplan.cli import cli
from regplan.errors import ApplyError
from regplan.plans import signing
from regplan.plans.plan import TargetKind
from regplan.plans.planfile import PlanStream
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.fsstore import FsStore
from tests.helpers import (
    KEY,
    NOW,
    content_hashes,
    docker_hashes,
    selection,
    sign_raw,
    write_plan_file,
    write_pub,
)
from tests.stores import around


@pytest.fixture
def root(demo_root: Path) -> Path:
    return demo_root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Someone else's folder, outside the root, shaped like what a plan touches."""
    o = tmp_path / "outside"
    (o / "repo/_manifests/tags/2019/current").mkdir(parents=True)
    (o / "repo/_manifests/tags/2019/current/link").write_text("precious")
    (o / "repo/precious.txt").write_text("do not move")
    o.chmod(0o750)
    return o


def snapshot(path: Path) -> dict[str, object]:
    """Content and the mode and owner of every folder: what a chmod/chown would change."""
    out: dict[str, object] = dict(content_hashes(path))
    for dirpath, _, _ in os.walk(path):
        st = os.lstat(dirpath)
        out[f"{dirpath}#meta"] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def trusted(tmp_path: Path) -> list[signing.TrustedKey]:
    return [signing.load_trusted(write_pub(KEY, tmp_path / "k.pub"))]


def applied(root: Path, tmp_path: Path, name: str, *images: str, prune: bool = False) -> str:
    plan = tmp_path / f"{name}.json"
    write_plan_file(root, selection(images=images, prune=prune), plan)
    result = apply.apply_plan(
        plan_path=plan, trusted=trusted(tmp_path), root=None, required=1, now=NOW
    )
    assert result.fingerprint_ok
    return result.apply_id


def rollback(root: Path, apply_id: str) -> apply.RollbackResult:
    return apply.rollback(storage=FsStorage.locate(root), apply_id=apply_id, now=NOW)


def state_of(root: Path, apply_id: str) -> State:
    [r] = [r for r in apply.records(FsStorage.locate(root)) if r.apply_id == apply_id]
    return r.state


def v2(root: Path) -> Path:
    return FsStorage.locate(root).v2


def test_rollback_refuses_a_destination_planted_as_a_symlink(
    root: Path, tmp_path: Path, outside: Path
) -> None:
    """old/repo and its emptied parent were removed; `repositories/old -> outside` is
    planted. Rollback used to chmod/chown the outside folder and restore into it."""
    apply_id = applied(root, tmp_path, "p", "old/repo", prune=True)
    (v2(root) / "repositories/old").symlink_to(outside)
    before = snapshot(outside)
    with pytest.raises(ApplyError, match=r"repositories/old is a symlink.*; nothing was moved"):
        rollback(root, apply_id)
    assert snapshot(outside) == before
    assert state_of(root, apply_id) == State.APPLIED
    (v2(root) / "repositories/old").unlink()
    rollback(root, apply_id)


def test_apply_never_follows_a_parent_swapped_for_a_symlink_after_preflight(
    root: Path, tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the preflight and the rename, `repositories/old` becomes a link to a
    folder with the same shape; apply used to move the outside folder in."""
    plan = tmp_path / "p.json"
    write_plan_file(root, selection(images=("old/repo:2019",)), plan)

    def swap() -> None:
        old = v2(root) / "repositories/old"
        old.rename(tmp_path / "old-moved-aside")
        old.symlink_to(outside)

    before = snapshot(outside)
    with (
        PlanStream(plan) as stream,
        pytest.raises(ApplyError, match=r"could not move .*never followed"),
    ):
        store = around(FsStore(FsStorage.locate(root)), once=True, move_out=swap)
        transaction.apply(stream, store, now=NOW, check_fresh=lambda: None)
    assert snapshot(outside) == before
    quarantine = root / "regplan-state/quarantine"
    assert sorted(p.name for p in quarantine.glob("*/*")) == ["INDEX.tsv"]  # no slot taken


def test_purge_older_than_leaves_an_apply_whose_final_check_failed(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Something wrote during the apply: the apply is recorded with a note, and a purge
    timer leaves it for a person; by id, or with --include-unverified, it goes."""
    plan = tmp_path / "p.json"
    write_plan_file(root, selection(images=("old/repo:2019",)), plan)

    def write() -> None:
        (v2(root) / "repositories/team/tool/_uploads/pushed-meanwhile").mkdir()

    with PlanStream(plan) as stream:
        store = around(FsStore(FsStorage.locate(root)), once=True, move_out=write)
        result = transaction.apply(stream, store, now=NOW, check_fresh=lambda: None)
    assert not result.fingerprint_ok
    storage = FsStorage.locate(root)
    later = NOW.replace(year=NOW.year + 1)
    assert apply.purge(storage=storage, apply_id=None, older_than=None, now=later) == []
    [done] = apply.purge(
        storage=storage, apply_id=None, older_than=None, now=later, include_unverified=True
    )
    assert done.apply_id == result.apply_id and done.state == State.PURGED


PLANTED: dict[str, Callable[[Path], dict[str, object]]] = {
    "absolute path": lambda o: {"op": "rmdir", "path": str(o), "mode": 511, "uid": 0, "gid": 0},
    "dot-dot path": lambda o: {
        "op": "rmdir",
        "path": "repositories/../../../outside",
        "mode": 511,
        "uid": 0,
        "gid": 0,
    },
    "no mode": lambda o: {"op": "rmdir", "path": "repositories/old", "uid": 0, "gid": 0},
    "unknown op": lambda o: {"op": "chmod", "path": "repositories/old"},
    "mode as text": lambda o: {
        "op": "rmdir",
        "path": "repositories/old",
        "mode": "777",
        "uid": 0,
        "gid": 0,
    },
}


@pytest.mark.parametrize("line", sorted(PLANTED))
def test_rollback_refuses_a_planted_journal_line(
    root: Path, tmp_path: Path, outside: Path, line: str
) -> None:
    apply_id = applied(root, tmp_path, "p", "old/repo", prune=True)
    journal = root / "regplan-state/applies" / apply_id / "journal"
    with journal.open("a") as f:
        f.write(json.dumps(PLANTED[line](outside)) + "\n")
    f_lines = journal.read_text().count("\n")
    before = snapshot(outside)
    with pytest.raises(ApplyError, match=rf"journal .* line {f_lines} is not a record regplan"):
        rollback(root, apply_id)
    assert snapshot(outside) == before
    assert state_of(root, apply_id) == State.APPLIED


def test_rollbacks_out_of_order_are_refused_and_in_order_restore_the_tree(
    root: Path, tmp_path: Path
) -> None:
    original = docker_hashes(root)
    first = applied(root, tmp_path, "p1", "old/repo:2019")
    second = applied(root, tmp_path, "p2", "old/repo:2020", prune=True)
    with pytest.raises(ApplyError, match=rf"first run: regplan rollback {second}"):
        rollback(root, first)
    assert state_of(root, first) == State.APPLIED
    assert rollback(root, second).fingerprint_ok
    assert rollback(root, first).fingerprint_ok
    assert docker_hashes(root) == original


def test_independent_applies_roll_back_in_any_order(root: Path, tmp_path: Path) -> None:
    original = docker_hashes(root)
    first = applied(root, tmp_path, "p1", "old/repo:2019")
    applied_second = applied(root, tmp_path, "p2", "team/app/cache:stable")
    rollback(root, first)
    rollback(root, applied_second)
    assert docker_hashes(root) == original


BAD_TARGETS = {
    "NUL byte": ("repositories/old/re\0po", TargetKind.REPOSITORY),
    "300-character name": ("repositories/old/" + "r" * 300, TargetKind.REPOSITORY),
    "newline": ("repositories/old/re\npo", TargetKind.REPOSITORY),
    "the blob store as a blob": ("blobs/sha256", TargetKind.BLOB),
    "a repository as a tag": ("repositories/old/repo", TargetKind.TAG),
}


@pytest.mark.parametrize("case", sorted(BAD_TARGETS))
def test_a_resigned_plan_with_a_path_unfit_for_its_kind_is_refused(
    root: Path, tmp_path: Path, case: str
) -> None:
    plan = tmp_path / "p.json"
    write_plan_file(root, selection(images=("old/repo:2019",)), plan)
    path, kind = BAD_TARGETS[case]
    raw = json.loads(plan.read_text())
    raw["targets"].append({"path": path, "kind": kind.value, "reason": "x", "refs": [], "bytes": 0})
    plan.write_text(json.dumps(sign_raw(raw), indent=2))
    before = docker_hashes(root)
    result = CliRunner().invoke(
        cli, ["apply", str(plan), "--trust", str(write_pub(KEY, tmp_path / "k.pub"))]
    )
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert "invalid plan: target path" in result.output
    assert docker_hashes(root) == before
