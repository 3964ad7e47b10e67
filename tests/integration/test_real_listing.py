"""A snapshot that went stale is caught (#36), on the real registry (2.8 and 3.1) over
its S3 driver on moto.

Images are pushed with skopeo (two tags pushed again, leaving three untagged
manifests); ``regplan list`` lists the bucket; ``plan --listing`` plans the untagged
manifests and the blobs only they use from that listing. Then, with the registry still
taking writes, one targeted untagged manifest is tagged (skopeo copies it by digest to
a new tag) and a new image in another repository is pushed with a layer only a
targeted manifest used. The registry is stopped, the plan applied, the registry
started again: the tagged manifest, the new image and every kept tag pull, the layer
stays, and the rest of the plan moved (the other untagged manifests no longer pull).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from regplan.changes.recheck import UNSELECTED
from regplan.demo.samples import BASE, Image, image
from regplan.scan.layout import Digest, blob_dir, layer_dir, revision_dir, tag_dir
from regplan.storage.objects import objscan
from regplan.storage.s3.bucket import S3Storage
from tests.integration.realreg import RealRegistry, bucket_refs, run, s3_driver_line
from tests.s3server import S3Server, objects

GRACE = 4
"""--gc-min-age in seconds: the listing is taken once every push is older than it, and
the plan made within it of the listing."""


def app(name: str) -> Image:
    """An image on the demo's base layer with a layer of its own."""
    return image([BASE, {f"app/{name}.txt": f"{name}\n".encode() * 64}])


@attrs.frozen
class Pushed:
    reg: RealRegistry
    storage: S3Storage
    tagged: tuple[str, ...]
    """repo:tag of every tag pushed last."""
    tag_later: Image
    """Untagged in team/app: tagged after the plan."""
    mounted: Image
    """Untagged in team/app: its own layer is pushed again in another repository."""
    gone: Image
    """Untagged in old/svc: nothing uses it after the plan."""


@pytest.fixture
def on_s3(
    s3server: S3Server,
    registry_version: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Pushed]:
    """A real registry over a new bucket on moto; tags pushed, two pushed again."""
    storage = s3server.storage()
    reg = RealRegistry.on_store(
        tmp_path,
        version=registry_version,
        driver=s3_driver_line(storage, s3server.endpoint, registry_version),
    )
    for k in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(k)  # AWS_CA_BUNDLE and the like: only the server's, below
    for k, v in s3server.env().items():
        if k.startswith("AWS_"):
            monkeypatch.setenv(k, v)  # regplan --root s3://; the registry drops them
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    reg.start()
    try:
        tag_later, mounted, gone = app("v1-first"), app("v1-second"), app("svc-first")
        for repo, tag, item in (
            ("team/app", "v1", tag_later),
            ("team/app", "v1", mounted),
            ("team/app", "v1", app("v1")),
            ("team/app", "v2", app("v2")),
            ("old/svc", "latest", gone),
            ("old/svc", "latest", app("svc")),
        ):
            reg.push(repo, tag, item)
        tagged = ("team/app:v1", "team/app:v2", "old/svc:latest")
        yield Pushed(reg, storage, tagged, tag_later, mounted, gone)
    finally:
        reg.stop()


def listing_and_plan(on: Pushed, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """``regplan list`` once every push is older than GRACE, then ``plan --listing``
    from it at once (the listing younger than GRACE): the plan file and its JSON."""
    time.sleep(GRACE + 1.5)  # S3 times are whole seconds, the plan's and listing's too
    root = on.storage.root
    listing = tmp_path / "listing.parquet"
    r = run("list", "--root", root, "-o", str(listing), "--json")
    assert r.exit_code == 0, r.output
    listed_at = json.loads(r.output)["listed_at"]
    key = tmp_path / "k"
    assert run("keygen", str(key)).exit_code == 0
    planned = tmp_path / "p.json"
    r = run(
        "plan",
        *("--root", root, "--key", str(key), "-o", str(planned)),
        *("--listing", str(listing), "--untagged", "*", "--gc", "--gc-min-age", f"{GRACE}s"),
    )
    assert r.exit_code == 0, r.output
    raw: dict[str, Any] = json.loads(planned.read_text())
    assert raw["request"]["listing"]["listed_at"] == listed_at
    return planned, raw


def push_after_the_listing(on: Pushed) -> Digest:
    """With the registry taking writes: the targeted untagged manifest ``tag_later``
    tagged ``team/app:pushed-later`` (skopeo copies it by digest), and ``sandbox/new:1``
    pushed with the layer only ``mounted`` used. That layer's digest."""
    reg, later = on.reg, on.tag_later
    copied = reg._skopeo(
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--preserve-digests",
        f"docker://{reg.host}/team/app@{later.digest}",
        f"docker://{reg.host}/team/app:pushed-later",
    )
    assert copied.returncode == 0, copied.stderr
    own_layer = on.mounted.layers[-1].digest
    reuse = image([BASE, {"app/v1-second.txt": b"v1-second\n" * 64}, {"app/new": b"new\n"}])
    assert own_layer in {b.digest for b in reuse.layers}
    reg.push("sandbox/new", "1", reuse)
    return own_layer


def apply_stopped(on: Pushed, planned: Path, pub: Path) -> dict[str, Any]:
    """The safe procedure: stop the registry, apply (``--json``) saying so, start it."""
    reg = on.reg
    reg.stop()
    r = run(
        "apply",
        str(planned),
        *("--trust", str(pub), "--root", on.storage.root, "--json"),
        *("--registry-url", reg.url, "--registry-stopped"),
    )
    reg.start()
    assert r.exit_code == 0, r.output
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_a_push_after_the_listing_keeps_what_it_uses(on_s3: Pushed, tmp_path: Path) -> None:
    """The module's scenario: what the stale listing targets and a later push uses is
    skipped by apply (named, with why), the rest of the plan moves, and pulls prove it."""
    on, reg = on_s3, on_s3.reg
    later, mounted, gone = on.tag_later, on.mounted, on.gone
    planned, raw = listing_and_plan(on, tmp_path)
    targets = {t["path"] for t in raw["targets"]}
    kept_for_later = _paths_of(later, "team/app", "v1")
    own_layer = mounted.layers[-1].digest
    for path in (
        *kept_for_later,
        revision_dir("team/app", mounted.digest),
        revision_dir("old/svc", gone.digest),
        blob_dir(own_layer),
    ):
        assert path in targets, path

    assert push_after_the_listing(on) == own_layer
    before = bucket_refs(on.storage)
    result = apply_stopped(on, planned, tmp_path / "k.pub")
    whys = {s["path"]: s["why"] for s in result["skipped"]}
    assert set(whys) == kept_for_later | {blob_dir(own_layer)}, whys
    said = {UNSELECTED, "needed by sandbox/new:1", "needed by team/app:pushed-later"}
    assert set(whys.values()) <= said, whys
    assert result["moved"] == len(targets) - len(whys) > 0

    after = bucket_refs(on.storage)
    removed = {f"team/app@{mounted.digest}", f"old/svc@{gone.digest}"}
    assert before - after == removed
    wanted = {*on.tagged, "team/app:pushed-later", "sandbox/new:1", f"team/app@{later.digest}"}
    assert wanted <= after
    left = objects(on.storage)
    assert any(k.endswith(f"/{blob_dir(own_layer)}/data") for k in left)
    for digest in (mounted.digest, mounted.config.digest, gone.digest, gone.layers[-1].digest):
        assert not any(k.endswith(f"/{blob_dir(digest)}/data") for k in left), digest
    assert reg.not_pulled(after) == []  # every tag and revision left, the new ones too
    assert reg.not_pulled(removed) == sorted(removed)


def _paths_of(item: Image, repo: str, tag: str) -> set[str]:
    """What a plan of ``--untagged '*' --gc`` removes for ``item``, once ``repo:tag`` and
    its layers used by no other manifest (all but the base): its revision, its entry in
    the tag's history, its layer links and blobs."""
    own: list[Digest] = [item.digest, item.config.digest, item.layers[-1].digest]
    history = f"{tag_dir(repo, tag)}/index/{item.digest.replace(':', '/', 1)}"
    return (
        {revision_dir(repo, item.digest), history}
        | {layer_dir(repo, d) for d in own[1:]}
        | {blob_dir(d) for d in own}
    )
