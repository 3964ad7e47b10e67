"""The real registry on object stores, one scenario on each: its S3 driver on moto's
server (registry 2.8 and 3.1) and its Azure driver on Azurite (3.1 only: 2.8's azure
driver always calls ``https://ACCOUNT.blob.REALM`` and cannot reach an emulator).

regplan reads the registry's own config. The scenario: push the demo (skopeo, cosign
signatures through the API); plan; refusals that move nothing (apply while the
registry serves: exit 6; while another apply holds the store's lock: exit 5; a plan
signed by an untrusted key or tampered with: exit 3; a plan made before a push: exit
4); apply; every kept image and signature pulls and every removed one does not;
rollback brings back every object; purge frees the quarantine; history; the
registry's own GC finds nothing more to delete.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from regplan.demo.samples import BASE, image
from regplan.storage.objects import objlock, objscan
from tests import azserver, s3server
from tests.helpers import OTHER_KEY, write_pub
from tests.integration.realreg import (
    VERSIONS,
    Objects,
    OnObjects,
    RealRegistry,
    azure_driver_line,
    bucket_refs,
    gc_counts,
    push_demo,
    run,
    s3_driver_line,
)


@attrs.frozen
class Cloud:
    """An object store the registry has a driver for, and how the tests see it."""

    name: str
    server: str
    """The session fixture that serves it."""
    versions: tuple[str, ...]
    """The registry versions whose driver reaches the emulator."""
    env: str
    """The prefix of the environment variables regplan must not need (it reads the config)."""
    driver: Callable[[Any, Any, str], str]
    """The driver's line of the registry's config: (server, storage, registry version)."""
    objects: Objects
    secrets: tuple[str, ...]
    recorded: Callable[[dict[str, Any], Any], None]
    """Checks what a plan records of the storage."""


def s3_recorded(raw: dict[str, Any], storage: Any) -> None:
    assert raw["bucket"] == storage.bucket


def azure_recorded(raw: dict[str, Any], storage: Any) -> None:
    assert raw == {
        "driver": "azure",
        "bucket": storage.container,
        "rootdirectory": storage.rootdirectory,
        "endpoint": storage.endpoint,
        "account": azserver.ACCOUNT,
    }


S3 = Cloud(
    name="s3",
    server="s3server",
    versions=VERSIONS,
    env="AWS_",
    driver=lambda server, storage, version: s3_driver_line(storage, server.endpoint, version),
    objects=s3server.objects,
    secrets=(s3server.ACCESS, s3server.SECRET),
    recorded=s3_recorded,
)
AZURE = Cloud(
    name="azure",
    server="azurite",
    versions=("3.1",),
    env="AZURE_",
    driver=lambda server, storage, version: azure_driver_line(storage, server.endpoint),
    objects=azserver.objects,
    secrets=(azserver.KEY,),
    recorded=azure_recorded,
)
CASES = [
    pytest.param((cloud, v), id=f"{cloud.name}-registry-{v}")
    for cloud in (S3, AZURE)
    for v in cloud.versions
]


@pytest.fixture(params=CASES)
def on_store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Cloud, OnObjects]]:
    """The demo's images pushed with skopeo (multi-arch with --all, cosign signatures
    through the API) into a real registry whose storage is the cloud's."""
    cloud, version = request.param
    server = request.getfixturevalue(cloud.server)
    storage = server.storage()
    reg = RealRegistry.on_store(
        tmp_path, version=version, driver=cloud.driver(server, storage, version)
    )
    for k in [k for k in os.environ if k.startswith(cloud.env)]:
        monkeypatch.delenv(k)  # regplan reads the endpoint and keys from the config only
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    reg.start()
    try:
        images = push_demo(reg)
        yield cloud, OnObjects(reg, storage, cloud.objects, cloud.secrets, images)
    finally:
        reg.stop()


def plan(on: OnObjects, key: Path, out: Path) -> dict[str, Any]:
    """Plan the untagged manifests and unreferenced blobs; the raw plan."""
    cfg = str(on.reg.config)
    r = run("plan", "--config", cfg, "--key", str(key), "-o", str(out), "--untagged", "*", "--gc")
    assert r.exit_code == 0, r.output
    assert not any(secret in out.read_text() for secret in on.secrets)
    raw: dict[str, Any] = json.loads(out.read_text())
    assert raw["summary"]["targets"] > 0
    return raw


def refusals(on: OnObjects, key: Path, tmp_path: Path) -> None:
    """Applies that are refused, each moving nothing."""
    cfg, pub = str(on.reg.config), f"{key}.pub"
    planned = tmp_path / "early.json"
    raw = plan(on, key, planned)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(raw | {"targets": raw["targets"][:1]}))
    before = on.listing()

    r = run("apply", str(planned), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 6, r.output  # the config's http.addr is probed: it accepts writes
    on.reg.stop()  # the safe procedure: stopped (the probe finds the port closed)
    bucket = on.storage.open()
    with objlock.Lock(bucket, command="apply other", now=time.time()):
        r = run("apply", str(planned), "--trust", pub, "--config", cfg)
        assert r.exit_code == 5, r.output
        assert "apply other (pid" in r.output
    other = str(write_pub(OTHER_KEY, tmp_path / "other.pub"))
    r = run("apply", str(planned), "--trust", other, "--config", cfg)
    assert r.exit_code == 3, r.output  # signed by another key than trusted
    r = run("apply", str(tampered), "--trust", pub, "--config", cfg)
    assert r.exit_code == 3, r.output
    assert on.listing() == before

    on.reg.start()
    on.reg.push("team/late", "v1", image([BASE]))  # the tree changes after planning
    on.reg.stop()
    before = on.listing()
    r = run("apply", str(planned), "--trust", pub, "--config", cfg, "--exact")
    assert r.exit_code == 4 and "stale" in r.output, r.output  # Terraform's rule, on request
    assert on.listing() == before
    on.reg.start()


def apply_pull_rollback(on: OnObjects, planned: Path, pub: str) -> tuple[str, set[str]]:
    """Apply; every kept image pulls and no removed one; rollback brings back every
    object and every pull. The apply's id and the refs an apply leaves."""
    reg, cfg = on.reg, str(on.reg.config)
    before_objects = on.listing()
    before = bucket_refs(on.storage)
    assert any(":sha256-" in r for r in before)  # cosign signatures are there
    reg.stop()
    r = run("apply", str(planned), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 0, r.output
    first: str = json.loads(r.output)["apply_id"]
    reg.start()
    after = bucket_refs(on.storage)
    gone = before - after
    assert gone and all("@" in g for g in gone)  # only untagged revisions go
    assert not reg.not_pulled(after), "a kept image no longer pulls"
    assert reg.not_pulled(gone) == sorted(gone), "a removed image still pulls"
    signatures = [ref for ref in after if ":sha256-" in ref]
    assert signatures and all(reg.fetch(*ref.split(":", 1)) for ref in signatures)

    reg.stop()
    r = run("rollback", first, "--config", cfg, "-q")
    assert r.exit_code == 0, r.output
    reg.start()
    assert on.listing() == before_objects  # key, size, ETag or Content-MD5, bytes
    assert not reg.not_pulled(before)
    return first, after


def test_real_registry_on_an_object_store(
    on_store: tuple[Cloud, OnObjects], tmp_path: Path
) -> None:
    """The scenario of the module's docstring, on each store and registry version."""
    cloud, on = on_store
    reg, cfg = on.reg, str(on.reg.config)
    key = tmp_path / "k"
    assert run("keygen", str(key)).exit_code == 0
    pub = f"{key}.pub"
    refusals(on, key, tmp_path)

    planned = tmp_path / "p.json"
    cloud.recorded(plan(on, key, planned)["storage"], on.storage)
    first, after = apply_pull_rollback(on, planned, pub)

    reg.stop()
    r = run("apply", str(planned), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 0, r.output
    second = json.loads(r.output)["apply_id"]
    r = run("purge", second, "--config", cfg, "-q")
    assert r.exit_code == 0, r.output
    assert not on.listing("regplan-state/quarantine/")
    reg.start()
    assert not reg.not_pulled(after)
    history = json.loads(run("history", "--config", cfg, "--json").output)
    assert [(h["apply_id"], h["state"]) for h in history] == [
        (first, "rolled-back"),
        (second, "purged"),
    ]
    assert all(h["registry"].startswith(f"probed {reg.url}: stopped") for h in history)
    marked, blobs, _ = gc_counts(reg)  # the registry's own GC finds nothing more to delete
    assert marked > 0 and blobs == 0
