"""apply, rollback and purge against the real registry, proven by real pulls."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.decide.selection import Selection
from regplan.demo.samples import DemoImages
from regplan.plans.plan import TargetKind
from tests.helpers import (
    KEY,
    NOW,
    docker_hashes,
    plant_leftovers,
    selection,
    write_plan_file,
    write_pub,
)
from tests.integration.realreg import Serve, all_refs, copy_of


def file_bytes(top: Path) -> int:
    return sum(os.lstat(Path(d) / f).st_size for d, _, files in os.walk(top) for f in files)


def test_apply_rollback_purge_with_real_pulls(
    pushed: tuple[Path, DemoImages],
    serve: Serve,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every walk in two forked shares, as on a large registry."""
    monkeypatch.setenv("REGPLAN_JOBS", "2")
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    original = docker_hashes(root)
    before = all_refs(root)
    plan_path = tmp_path / "p.json"
    plan = write_plan_file(
        root, selection(("team/app:v1", "old/repo:2020"), ("*",), prune=True), plan_path
    )
    pub = write_pub(KEY, tmp_path / "k.pub")
    runner = CliRunner()

    reg.stop()  # the safe procedure: apply probes the stopped registry and proceeds
    probe = ["--registry-url", reg.url]
    r = runner.invoke(cli, ["apply", str(plan_path), "--trust", str(pub), "--json", *probe])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)["apply_id"]
    reg.start()
    after = all_refs(root)
    gone = before - after
    assert {"team/app:v1", "old/repo:2020"} <= gone
    assert all(reg.pull(ref) for ref in sorted(after)), "a kept image no longer pulls"
    assert not any(reg.pull(ref) for ref in sorted(gone)), "a removed image still pulls"

    reg.stop()
    r = runner.invoke(cli, ["rollback", first, "--root", str(root), *probe])
    assert r.exit_code == 0, r.output
    reg.start()
    assert docker_hashes(root) == original  # every file, byte for byte
    assert all(reg.pull(ref) for ref in sorted(before))

    r = runner.invoke(cli, ["apply", str(plan_path), "--trust", str(pub), "--json"])
    second = json.loads(r.stdout)["apply_id"]
    quarantine = root / "regplan-state" / "quarantine" / second
    index = (quarantine / "INDEX.tsv").stat().st_size  # regplan's map of the slots
    assert file_bytes(quarantine) - index == plan.summary.bytes
    total = file_bytes(root / "docker") + file_bytes(root / "regplan-state" / "quarantine")
    r = runner.invoke(cli, ["purge", second, "--root", str(root)])
    assert r.exit_code == 0, r.output
    assert not quarantine.exists()
    freed = total - file_bytes(root / "docker") - file_bytes(root / "regplan-state" / "quarantine")
    assert freed == plan.summary.bytes + index
    reg.restart()
    assert all(reg.pull(ref) for ref in sorted(after))


def test_a_tag_deleted_through_the_api_does_not_stop_the_plan(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """v3 deletes a tag through the API (``DELETE /v2/<name>/manifests/<tag>``,
    distribution#3427); 2.8 refuses it. Between plan and apply it changes a part of the
    tree the plan touches: ``--exact`` refuses (exit 4, nothing moved); by default the
    approved targets still move, and every other image still pulls (#32)."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    plan_path = tmp_path / "p.json"
    write_plan_file(root, selection(("team/app:v1",), (), prune=False), plan_path)
    pub = write_pub(KEY, tmp_path / "k.pub")
    status, body = reg.delete_tag("team/app", "v2")
    if reg.version == "2.8":
        assert status >= 400, body  # 2.8 deletes by digest only: nothing changed
        assert reg.pull("team/app:v2")
        return
    assert status == 202, body
    assert not reg.pull("team/app:v2")
    reg.stop()
    after_delete = docker_hashes(root)
    apply_cmd = ["apply", str(plan_path), "--trust", str(pub), "--registry-url", reg.url]
    r = CliRunner().invoke(cli, [*apply_cmd, "--exact"])
    assert r.exit_code == 4, r.output
    assert "is stale" in r.output and "repositories/team/app" in r.output
    assert docker_hashes(root) == after_delete
    r = CliRunner().invoke(cli, apply_cmd)
    assert r.exit_code == 0, r.output
    reg.start()
    assert not reg.pull("team/app:v1")
    assert reg.pull("team/app:latest") and reg.pull("old/repo:2019")


def test_leftover_temporary_files_go_and_come_back(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """The files a v3.1 registry killed mid-write leaves (a tag's link being rewritten,
    beside the link; a blob's data never renamed): --leftovers-older-than moves just
    them, every image still pulls, and a rollback puts them back with their times."""
    root = copy_of(pushed, tmp_path)
    old = (NOW - timedelta(days=3)).timestamp()
    rels = plant_leftovers(root, old)
    reg = serve(root)
    original = docker_hashes(root)
    before = all_refs(root)
    plan_path = tmp_path / "p.json"
    plan = write_plan_file(root, Selection(leftovers_older_than="1d"), plan_path)
    assert {(t.kind, t.path) for t in plan.targets} == {(TargetKind.LEFTOVER, r) for r in rels}
    pub = write_pub(KEY, tmp_path / "k.pub")
    runner = CliRunner()
    reg.stop()
    probe = ["--registry-url", reg.url]
    r = runner.invoke(cli, ["apply", str(plan_path), "--trust", str(pub), "--json", *probe])
    assert r.exit_code == 0, r.output
    apply_id = json.loads(r.stdout)["apply_id"]
    v2 = root / "docker/registry/v2"
    assert not any((v2 / rel).exists() for rel in rels)
    reg.start()
    assert all_refs(root) == before
    assert all(reg.pull(ref) for ref in sorted(before)), "an image no longer pulls"
    reg.stop()
    r = runner.invoke(cli, ["rollback", apply_id, "--root", str(root), *probe])
    assert r.exit_code == 0, r.output
    assert docker_hashes(root) == original
    assert [os.lstat(v2 / rel).st_mtime for rel in rels] == [old, old]
