"""Rollback on a registry that was pushed to meanwhile: what the apply moved comes back,
exit 0; what else changed is a warning, never an error (issue #33, item 10)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from regplan.cli import cli
from tests.helpers import KEY, selection, write_plan_file, write_pub


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
