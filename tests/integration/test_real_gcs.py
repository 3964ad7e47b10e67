"""The real registry's tree on GCS (gcp-storage-emulator): what registry 3.1 wrote on a
filesystem, copied key for key into a bucket as its gcs driver lays it out
(rootdirectory + path), then plan, apply, rollback and purge on ``gs://``. The proof
is by real pulls: the bucket's tree is served again by the registry (copied back to a
filesystem) after the apply and after the rollback.

The v3 gcs driver cannot push here: its uploads go to Google's host whatever
STORAGE_EMULATOR_HOST says (README, Object storage)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.storage.gcs.place import GcsStorage
from regplan.storage.objects import objscan
from tests.gcsserver import GcsEmulator, download_tree, objects, upload_tree
from tests.helpers import write_keys
from tests.integration.realreg import RealRegistry, bucket_refs, push_demo


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def served(storage: GcsStorage, base: Path, name: str) -> RealRegistry:
    """A registry 3.1 serving what the bucket holds now."""
    root = base / name
    download_tree(storage, root)
    (base / f"{name}-work").mkdir()
    reg = RealRegistry(root, base / f"{name}-work", version="3.1")
    reg.start()
    return reg


def test_real_registry_tree_on_gcs_apply_rollback_purge(
    gcs_emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    fs = tmp_path / "fs"
    reg = RealRegistry(fs, work, version="3.1")
    reg.start()
    try:
        push_demo(reg)
    finally:
        reg.stop()
    storage = gcs_emulator.storage()
    upload_tree(fs, storage)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    key, pub = write_keys(tmp_path)
    before_objects, before = objects(storage), bucket_refs(storage)

    plan = tmp_path / "p.json"
    r = run("plan", "--root", storage.root, "--key", str(key), "-o", str(plan),
            "--untagged", "*", "--gc")  # fmt: skip
    assert r.exit_code == 0, r.output
    raw = json.loads(plan.read_text())
    assert raw["storage"]["driver"] == "gcs" and raw["summary"]["targets"] > 0
    r = run("apply", str(plan), "--trust", str(pub), "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)["apply_id"]
    after = bucket_refs(storage)
    gone = before - after
    assert gone and all("@" in g for g in gone)
    applied = served(storage, tmp_path, "applied")
    try:
        assert all(applied.pull(ref) for ref in sorted(after)), "a kept image no longer pulls"
        assert not any(applied.pull(ref) for ref in sorted(gone)), "a removed image pulls"
    finally:
        applied.stop()

    r = run("rollback", first, "--root", storage.root, "-q")
    assert r.exit_code == 0, r.output
    assert objects(storage) == before_objects
    restored = served(storage, tmp_path, "restored")
    try:
        assert all(restored.pull(ref) for ref in sorted(before))
    finally:
        restored.stop()

    r = run("apply", str(plan), "--trust", str(pub), "--json")
    assert r.exit_code == 0, r.output
    second = json.loads(r.output)["apply_id"]
    assert run("purge", second, "--root", storage.root, "-q").exit_code == 0
    assert not objects(storage, "regplan-state/quarantine/")
    history = json.loads(run("history", "--root", storage.root, "--json").output)
    assert [h["state"] for h in history] == ["rolled-back", "purged"]
