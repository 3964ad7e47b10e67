"""The real registry on S3 (its s3-aws driver on moto's server): plan, apply, rollback
and purge with regplan reading the registry's own config, proven by real pulls."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.demo.samples import DemoImages
from regplan.storage.objects import objlock, objscan
from regplan.storage.s3 import bucket
from regplan.storage.s3.bucket import S3Storage
from tests.helpers import KEY, write_pub
from tests.integration.realreg import RealRegistry, bucket_refs, push_demo
from tests.s3server import ACCESS, SECRET, S3Server, objects


def driver_line(storage: S3Storage, endpoint: str, version: str) -> str:
    """The s3 driver's parameters; v3's driver addresses the bucket by host name unless
    told otherwise (2.8's used the path with a regionendpoint)."""
    path_style = ", forcepathstyle: true" if version != "2.8" else ""
    return (
        f"s3: {{accesskey: {ACCESS}, secretkey: {SECRET}, region: us-east-1, "
        f"regionendpoint: '{endpoint}', bucket: {storage.bucket}, "
        f"rootdirectory: /{storage.rootdirectory}, secure: false, v4auth: true{path_style}}}"
    )


@pytest.fixture
def on_s3(
    s3server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_version: str
) -> Iterator[tuple[RealRegistry, S3Storage, DemoImages]]:
    """The demo's images pushed with skopeo (multi-arch with --all, cosign signatures
    through the API) into a real registry whose storage is a bucket."""
    storage = s3server.storage()
    work = tmp_path / "work"
    work.mkdir()
    reg = RealRegistry(
        tmp_path / "unused",
        work,
        version=registry_version,
        driver=driver_line(storage, s3server.endpoint, registry_version),
        storage="  redirect: {disable: true}\n",
    )
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)  # regplan reads the endpoint and keys from the config only
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    reg.start()
    try:
        yield reg, storage, push_demo(reg)
    finally:
        reg.stop()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_real_registry_on_s3_apply_rollback_purge(
    on_s3: tuple[RealRegistry, S3Storage, DemoImages], tmp_path: Path
) -> None:
    """--config is the registry's own: the plan removes untagged manifests and
    unreferenced blobs; after apply and a restart every kept tag and revision still
    pulls through the registry and every removed one does not; rollback brings back
    every object (key, size, ETag, bytes) and every pull; purge frees the quarantine."""
    reg, storage, _ = on_s3
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
    assert raw["storage"]["bucket"] == storage.bucket
    assert ACCESS not in json.dumps(raw["storage"]) and SECRET not in plan.read_text()
    assert raw["summary"]["targets"] > 0

    r = run("apply", str(plan), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 6, r.output  # the config's http.addr is probed: it accepts writes
    assert objects(storage) == before_objects
    reg.stop()  # the safe procedure: stopped (the probe finds the port closed)
    r = run("apply", str(plan), "--trust", pub, "--config", cfg, "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.output)["apply_id"]
    reg.start()
    after = bucket_refs(storage)
    gone = before - after
    assert gone and all("@" in g for g in gone)  # only untagged revisions go
    assert all(reg.pull(ref) for ref in sorted(after)), "a kept image no longer pulls"
    assert not any(reg.pull(ref) for ref in sorted(gone)), "a removed image still pulls"
    signatures = [ref for ref in after if ":sha256-" in ref]
    assert all(reg.fetch(*ref.split(":", 1)) for ref in signatures)

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
    r = run("history", "--config", cfg, "--json")
    history = json.loads(r.output)
    assert [h["state"] for h in history] == ["rolled-back", "purged"]
    assert all(h["registry"].startswith(f"probed {reg.url}: stopped") for h in history)
    # the registry's own GC finds nothing more to delete
    out = reg.garbage_collect("--dry-run")
    found = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible", out)
    assert found is not None, out
    assert int(found.group(1)) > 0 and found.group(2) == "0", out


def test_second_apply_at_the_same_time_is_exit_5(
    on_s3: tuple[RealRegistry, S3Storage, DemoImages], tmp_path: Path
) -> None:
    """While an apply holds the bucket's lock (created with If-None-Match), a second one
    gets exit 5 naming the holder, and moves nothing."""
    reg, storage, _ = on_s3
    cfg = str(reg.config)
    key = tmp_path / "k"
    run("keygen", str(key))
    plan = tmp_path / "p.json"
    r = run("plan", "--config", cfg, "--key", str(key), "-o", str(plan), "--gc", "--untagged", "*")
    assert r.exit_code == 0
    b = bucket.S3Bucket(
        bucket.from_config(
            {
                "bucket": storage.bucket,
                "rootdirectory": storage.rootdirectory,
                "regionendpoint": storage.endpoint,
                "accesskey": ACCESS,
                "secretkey": SECRET,
            },
            {},
            "test",
        )
    )
    before = objects(storage)
    reg.stop()  # so that the write guard lets apply reach the lock
    with objlock.Lock(b, command="apply other", now=time.time()):
        r = run("apply", str(plan), "--trust", str(key) + ".pub", "--config", cfg)
        assert r.exit_code == 5, r.output
        assert "apply other (pid" in r.output
    assert objects(storage) == before
    r = run("apply", str(plan), "--trust", str(write_pub(KEY, tmp_path / "x.pub")), "--config", cfg)
    assert r.exit_code == 3  # signed by another key than trusted
