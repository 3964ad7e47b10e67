"""On filesystem storage no command writes a cache (or anything else) under the user's
home: the manifest cache is an object store's only (#33, item 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from tests.helpers import write_keys


def test_plan_apply_rollback_on_a_filesystem_leave_home_alone(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("REGPLAN_CACHE_DIR", raising=False)
    key, pub = write_keys(tmp_path)
    plan = tmp_path / "p.json"
    runner = CliRunner()
    steps = [
        ["plan", "--root", str(demo_root), "--key", str(key), "--untagged", "*", "--gc",
         "-o", str(plan)],
        ["show", str(plan), "--trust", str(pub)],
        ["verify", str(plan), "--trust", str(pub)],
    ]  # fmt: skip
    for args in steps:
        r = runner.invoke(cli, args)
        assert r.exit_code == 0, r.output
    applied = runner.invoke(cli, ["apply", str(plan), "--trust", str(pub), "--json"])
    assert applied.exit_code == 0, applied.output
    apply_id = json.loads(applied.stdout)["apply_id"]
    for args in (["history", "--root", str(demo_root)], ["rollback", apply_id]):
        r = runner.invoke(cli, [*args, "--root", str(demo_root)] if args[0] == "rollback" else args)
        assert r.exit_code == 0, r.output
    assert list(home.rglob("*")) == []
