"""Undo is exact: after a rollback every decision regplan makes is the one it made before
the apply, on the filesystem and on each object store (where a restored object is "new":
its time, a tag's push time and a blob's age, must not be)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.demo.samples import BASE, Registry, image
from regplan.scan.layout import V2
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Obj
from regplan.storage.objects.objtimes import Overlay, Restored
from tests import azserver, gcsserver, s3server
from tests.helpers import plant_leftovers, write_keys

TAGS = ("v1", "v2", "v3", "v4")
RULES = ("--image", "app", "--keep-last", "2", "--gc", "--gc-min-age", "3s",
         "--leftovers-older-than", "3s")  # fmt: skip
"""Push times rank the tags; blob ages decide what the collector may take, and a
leftover temporary file's age whether it goes."""


def _registry(root: Path) -> None:
    reg = Registry.create(root)
    for n, tag in enumerate(TAGS):
        reg.push("app", image([BASE, {f"f{n}": f"{tag}\n".encode() * 64}]), tag)
    plant_leftovers(root, time.time() - 3600)


def _on_filesystem(_: pytest.FixtureRequest, tmp_path: Path, __: pytest.MonkeyPatch) -> str:
    root = tmp_path / "fs"
    _registry(root)  # tags a minute apart in 2026; blobs dated an hour ago
    old = time.time() - 3600
    for path in root.joinpath(*V2, "blobs").rglob("data"):
        os.utime(path, (old, old))
    return str(root)


def _in_bucket(
    fixture: str,
    helpers: ModuleType,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    server = request.getfixturevalue(fixture)
    storage = server.storage()
    _registry(tmp_path / "fs")
    tags = {
        f"docker/registry/v2/repositories/app/_manifests/tags/{t}/current/link": t for t in TAGS
    }
    rest = tmp_path / "rest"
    for path in sorted((tmp_path / "fs").rglob("*")):
        rel = path.relative_to(tmp_path / "fs").as_posix()
        if path.is_file() and rel not in tags:
            target = rest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    helpers.upload_tree(rest, storage)
    for rel in tags:  # pushed in order, each a second after the one before (S3 dates in s)
        time.sleep(1.1)
        helpers.put(storage, rel, (tmp_path / "fs" / rel).read_bytes())
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    root: str = storage.root
    return root


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path, pytest.MonkeyPatch], str]] = {
    "filesystem": _on_filesystem,
    "s3": partial(_in_bucket, "s3server", s3server),
    "azure": partial(_in_bucket, "azurite", azserver),
    "gcs": partial(_in_bucket, "gcs_emulator", gcsserver),
}


def run(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def decisions(root: str, key: Path, out: Path) -> tuple[object, ...]:
    run("plan", "--root", root, "--key", str(key), "-o", str(out), "-q", *RULES)
    raw = json.loads(out.read_bytes())
    images = sorted(
        (i["repo"], i["tag"] or "", i["digest"] or "", i["verdict"], i["reason"])
        for i in raw["images"]
    )
    targets = sorted((t["path"], t["kind"]) for t in raw["targets"])
    kept = sorted((k["path"], k["reason"]) for k in raw.get("kept", ()))
    return images, targets, kept


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_decision_after_a_rollback_is_the_one_before_the_apply(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = BACKENDS[backend](request, tmp_path, monkeypatch)
    key, pub = write_keys(tmp_path)
    before = decisions(root, key, tmp_path / "p.json")
    images = before[0]
    assert isinstance(images, list)
    assert [i[1] for i in images if i[3] == "removed"] == ["v1", "v2"]
    targets = before[1]
    assert isinstance(targets, list) and targets, "the blobs of v1 and v2 go with them"
    assert "leftover" in {kind for _, kind in targets}, "and the blob's leftover"

    applied = json.loads(run("apply", str(tmp_path / "p.json"), "--trust", str(pub), "--json"))
    time.sleep(1.1)  # what the rollback writes is dated later than anything before
    run("rollback", applied["apply_id"], "--root", root, "-q")

    assert decisions(root, key, tmp_path / "again.json") == before
    # and again, through a second apply and rollback of the same decisions
    applied = json.loads(run("apply", str(tmp_path / "again.json"), "--trust", str(pub), "--json"))
    time.sleep(1.1)
    run("rollback", applied["apply_id"], "--root", root, "-q")
    assert decisions(root, key, tmp_path / "third.json") == before


def test_a_push_after_the_rollback_is_dated_by_s3_again() -> None:
    """The original time holds only while the object is the one the rollback wrote: a
    re-push (even of the same bytes) a second later has its own time."""
    rel = "repositories/app/_manifests/tags/v1/current/link"
    overlay = Overlay({rel: Restored(etag="e", original=100.0, restored=5000.0)})
    assert overlay.time(rel, Obj("current/link", 71, "e", 5000.4)) == 100.0
    assert overlay.time(rel, Obj("current/link", 71, "e", 5002.0)) == 5002.0  # re-pushed
    assert overlay.time(rel, Obj("current/link", 71, "f", 5000.0)) == 5000.0  # other bytes
    assert overlay.time("repositories/app/x/link", Obj("link", 71, "e", 5000.0)) == 5000.0
