"""Rollback on a registry that was pushed to meanwhile: what the apply moved comes back,
exit 0; what else changed is a warning, never an error (issue #33, item 10)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan import apply
from regplan.cli import cli
from regplan.errors import ApplyError
from regplan.plans.signing import load_trusted
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import KEY, NOW, FaultyDisk, on_disk, selection, write_plan_file, write_pub


def _push_unrelated(root: Path) -> None:
    """A new repository's tag, as a push writes it (a link to a manifest)."""
    tag = root / "docker/registry/v2/repositories/sandbox/foo/_manifests/tags/1/current"
    tag.mkdir(parents=True)
    (tag / "link").write_text("sha256:" + "ab" * 32)


def test_a_rollback_that_put_everything_back_is_exit_0_with_a_warning(
    demo_root: Path, tmp_path: Path
) -> None:
    plan = tmp_path / "p.json"
    write_plan_file(demo_root, selection(("team/app:v1", "old/repo")), plan)
    pub = write_pub(KEY, tmp_path / "k.pub")
    runner = CliRunner()
    applied = runner.invoke(cli, ["apply", str(plan), "--trust", str(pub), "--json"])
    assert applied.exit_code == 0, applied.output
    apply_id = json.loads(applied.stdout)["apply_id"]
    _push_unrelated(demo_root)
    r = runner.invoke(cli, ["rollback", apply_id, "--root", str(demo_root)])
    assert r.exit_code == 0, r.output
    assert "Error" not in r.output
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("Warning:")]
    assert "everything it moved is back" in warning
    assert "repositories/sandbox" in warning
    history = runner.invoke(cli, ["history", "--root", str(demo_root), "--json"])
    [record] = json.loads(history.stdout)
    assert record["state"] == "rolled-back"
    assert "differs" in record["note"]


def test_an_interrupted_apply_is_named_to_other_plans(demo_root: Path, tmp_path: Path) -> None:
    """Another plan meets the half-done tree: it is told which apply to finish or undo,
    not that it is stale (issue #33, item 12)."""
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    write_plan_file(demo_root, selection(("team/app:v1",)), first)
    write_plan_file(demo_root, selection(("old/repo",)), second)
    pub = write_pub(KEY, tmp_path / "k.pub")
    faulty = FaultyDisk(errno.EACCES, rename_at=2)
    with pytest.raises(ApplyError):
        apply.apply_plan(
            plan_path=first,
            trusted=[load_trusted(pub)],
            root=None,
            required=1,
            now=NOW,
            opener=on_disk(faulty),
        )
    [record] = apply.records(FsStorage.locate(demo_root))
    r = CliRunner().invoke(cli, ["apply", str(second), "--trust", str(pub)])
    assert r.exit_code == 1, r.output
    assert f"apply {record.apply_id} of plan {record.plan_id} was interrupted" in r.output
    assert f"regplan rollback {record.apply_id}" in r.output
    assert "stale" not in r.output
