"""The real registry on Azure Blob (v3's azure driver on Azurite): push, plan, apply,
pull the kept images, rollback object for object, purge, stale and tampered plans
refused, with regplan reading the registry's own config. Registry 3.1 only: 2.8's
azure driver always calls ``https://ACCOUNT.blob.REALM`` and cannot reach an emulator."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.demo.samples import BASE, DemoImages, image
from regplan.storage.azure.place import AzureStorage
from regplan.storage.objects import objscan
from tests.azserver import ACCOUNT, KEY, Azurite, objects
from tests.integration.realreg import RealRegistry, bucket_refs, push_demo

Pushed = tuple[RealRegistry, AzureStorage, DemoImages]


def driver_line(storage: AzureStorage, endpoint: str) -> str:
    return (
        f"azure: {{accountname: {ACCOUNT}, accountkey: '{KEY}', container: {storage.container}, "
        f"serviceurl: '{endpoint}', rootdirectory: /{storage.rootdirectory}, "
        "credentials: {type: shared_key}}"
    )


@pytest.fixture
def on_azure(azurite: Azurite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pushed]:
    """The demo's images pushed with skopeo (multi-arch with --all, cosign signatures
    through the API) into a real registry 3.1 whose storage is an Azure container."""
    storage = azurite.storage()
    work = tmp_path / "work"
    work.mkdir()
    reg = RealRegistry(
        tmp_path / "unused",
        work,
        version="3.1",
        driver=driver_line(storage, azurite.endpoint),
        storage="  redirect: {disable: true}\n",
    )
    for k in [k for k in os.environ if k.startswith("AZURE_")]:
        monkeypatch.delenv(k)  # regplan reads the account and key from the config only
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    reg.start()
    try:
        yield reg, storage, push_demo(reg)
    finally:
        reg.stop()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_real_registry_on_azure_apply_rollback_purge(on_azure: Pushed, tmp_path: Path) -> None:
    """The plan removes untagged manifests and unreferenced blobs; after apply and a
    restart every kept tag and revision pulls and every removed one does not; rollback
    brings back every blob (name, size, Content-MD5, bytes) and every pull; purge frees
    the quarantine; the registry's own GC then finds nothing more."""
    reg, storage, _ = on_azure
    cfg = str(reg.config)
    key = tmp_path / "k"
    assert run("keygen", str(key)).exit_code == 0
    pub = str(key) + ".pub"
    before_objects = objects(storage)
    before = bucket_refs(storage)
    assert any(":sha256-" in r for r in before)  # cosign signatures are there

    plan = tmp_path / "p.json"
    r = run("plan", "--config", cfg, "--key", str(key), "-o", str(plan), "--untagged", "*", "--gc")
    assert r.exit_code == 0, r.output
    raw = json.loads(plan.read_text())
    assert raw["storage"] == {
        "driver": "azure",
        "bucket": storage.container,
        "rootdirectory": storage.rootdirectory,
        "endpoint": storage.endpoint,
        "account": ACCOUNT,
    }
    assert KEY not in plan.read_text()
    assert raw["summary"]["targets"] > 0

    r = run("apply", str(plan), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 6, r.output  # the registry answers: it accepts writes
    assert objects(storage) == before_objects
    reg.stop()
    r = run("apply", str(plan), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)["apply_id"]
    reg.start()
    after = bucket_refs(storage)
    gone = before - after
    assert gone and all("@" in g for g in gone)  # only untagged revisions go
    assert all(reg.pull(ref) for ref in sorted(after)), "a kept image no longer pulls"
    assert not any(reg.pull(ref) for ref in sorted(gone)), "a removed image still pulls"

    reg.stop()
    r = run("rollback", first, "--config", cfg, "-q")
    assert r.exit_code == 0, r.output
    reg.start()
    assert objects(storage) == before_objects
    assert all(reg.pull(ref) for ref in sorted(before))

    reg.stop()
    r = run("apply", str(plan), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 0, r.output
    second = json.loads(r.output)["apply_id"]
    r = run("purge", second, "--config", cfg, "-q")
    assert r.exit_code == 0, r.output
    assert not objects(storage, "regplan-state/quarantine/")
    reg.start()
    assert all(reg.pull(ref) for ref in sorted(after))
    history = json.loads(run("history", "--config", cfg, "--json").output)
    assert [h["state"] for h in history] == ["rolled-back", "purged"]
    out = reg.garbage_collect("--dry-run")
    found = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible", out)
    assert found is not None, out
    assert int(found.group(1)) > 0 and found.group(2) == "0", out


def test_stale_and_tampered_plans_are_refused_on_azure(on_azure: Pushed, tmp_path: Path) -> None:
    """A plan whose targets were edited fails its signature (exit 3); a plan made before
    a push fails its fingerprint (exit 4); neither moves a blob."""
    reg, storage, _ = on_azure
    cfg = str(reg.config)
    key = tmp_path / "k"
    run("keygen", str(key))
    pub = str(key) + ".pub"
    plan = tmp_path / "p.json"
    r = run("plan", "--config", cfg, "--key", str(key), "-o", str(plan), "--untagged", "*", "--gc")
    assert r.exit_code == 0, r.output
    raw = json.loads(plan.read_text())
    raw["targets"] = raw["targets"][:1]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(raw))
    reg.push("team/late", "v1", image([BASE]))  # the tree changes after planning
    reg.stop()
    before = objects(storage)
    r = run("apply", str(tampered), "--trust", pub, "--config", cfg)
    assert r.exit_code == 3, r.output
    r = run("apply", str(plan), "--trust", pub, "--config", cfg)
    assert r.exit_code == 4, r.output
    assert "stale" in r.output
    assert objects(storage) == before
