"""Undo is exact: after a rollback every decision regplan makes is the one it made before
the apply, on the filesystem and on each object store (where a restored object is "new":
its time, a tag's push time and a blob's age, must not be). The object stores are the
memory bucket in each one's flavour (its times are each store's: S3 and Azure date in
whole seconds, GCS in milliseconds), dated by an injected clock."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import attrs
import pytest

from regplan import apply, workflow
from regplan.decide.selection import ImageSpec, Selection
from regplan.demo.samples import BASE, Registry, image
from regplan.plans import signing
from regplan.scan.layout import V2
from regplan.storage import location
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Obj, ObjectStorage
from regplan.storage.objects.memory import FLAVOURS, MemoryBucket
from regplan.storage.objects.objtimes import Overlay, Restored
from tests.buckets import Clock
from tests.helpers import KEY, plant_leftovers, write_keys

TAGS = ("v1", "v2", "v3", "v4")
RULES = Selection(
    images=(ImageSpec.parse("app"),),
    retention=attrs.evolve(Selection().retention, keep_last=2),
    gc=True,
    gc_min_age="3s",
    leftovers_older_than="3s",
)
"""``--image app --keep-last 2 --gc --gc-min-age 3s --leftovers-older-than 3s``: push
times rank the tags; blob ages decide what the collector may take, and a leftover
temporary file's age whether it goes."""


@attrs.frozen
class Backend:
    root: Path | ObjectStorage
    now: Callable[[], datetime]
    later: Callable[[], None]
    """Time passes (what the rollback writes is dated later than anything before)."""


def _registry(root: Path) -> None:
    reg = Registry.create(root)
    for n, tag in enumerate(TAGS):
        reg.push("app", image([BASE, {f"f{n}": f"{tag}\n".encode() * 64}]), tag)
    plant_leftovers(root, time.time() - 3600)


def _on_filesystem(tmp_path: Path, _: pytest.MonkeyPatch) -> Backend:
    root = tmp_path / "fs"
    _registry(root)  # tags a minute apart in 2026; blobs dated an hour ago
    old = time.time() - 3600
    for path in root.joinpath(*V2, "blobs").rglob("data"):
        os.utime(path, (old, old))
    return Backend(root, lambda: datetime.now(UTC), lambda: None)


def _in_bucket(flavour: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """Everything written an hour before the tags' current links, which are pushed in
    order a second apart (the store's own times: a bucket keeps no other)."""
    clock = Clock()
    bucket = MemoryBucket(flavour, clock=clock)
    _registry(tmp_path / "fs")
    tags = {
        f"docker/registry/v2/repositories/app/_manifests/tags/{t}/current/link": t for t in TAGS
    }
    files = sorted(p for p in (tmp_path / "fs").rglob("*") if p.is_file())
    rels = {p.relative_to(tmp_path / "fs").as_posix(): p for p in files}
    for rel, path in rels.items():
        if rel not in tags:
            bucket.put(bucket.storage.key(rel), path.read_bytes())
    clock.advance(3600)
    for rel in tags:
        clock.advance(1)
        bucket.put(bucket.storage.key(rel), rels[rel].read_bytes())
    clock.advance(60)
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    return Backend(bucket.storage, clock.now, lambda: clock.advance(1))


BACKENDS: dict[str, Callable[[Path, pytest.MonkeyPatch], Backend]] = {
    "filesystem": _on_filesystem,
    **{f"memory-{f}": partial(_in_bucket, f) for f in sorted(FLAVOURS)},
}


def decisions(backend: Backend, out: Path) -> tuple[object, ...]:
    with workflow.make_plan(
        storage=location.locate(backend.root), selection=RULES, argv=("regplan", "plan"),
        key=KEY, signer="test-planner", now=backend.now(),
    ) as draft:  # fmt: skip
        workflow.write_plan(draft, out)
    raw = json.loads(out.read_bytes())
    images = sorted(
        (i["repo"], i["tag"] or "", i["digest"] or "", i["verdict"], i["reason"])
        for i in raw["images"]
    )
    targets = sorted((t["path"], t["kind"]) for t in raw["targets"])
    kept = sorted((k["path"], k["reason"]) for k in raw.get("kept", ()))
    return images, targets, kept


def apply_and_roll_back(backend: Backend, plan: Path, trusted: list[signing.TrustedKey]) -> None:
    applied = apply.apply_plan(
        plan_path=plan, trusted=trusted, root=backend.root, required=1, now=backend.now()
    )
    assert applied.fingerprint_ok
    backend.later()
    done = apply.rollback(
        storage=location.locate(backend.root), apply_id=applied.apply_id, now=backend.now()
    )
    assert done.fingerprint_ok


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_decision_after_a_rollback_is_the_one_before_the_apply(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = BACKENDS[backend](tmp_path, monkeypatch)
    trusted = signing.trusted_from([write_keys(tmp_path)[1]])
    before = decisions(found, tmp_path / "p.json")
    images = before[0]
    assert isinstance(images, list)
    assert [i[1] for i in images if i[3] == "removed"] == ["v1", "v2"]
    targets = before[1]
    assert isinstance(targets, list) and targets, "the blobs of v1 and v2 go with them"
    assert "leftover" in {kind for _, kind in targets}, "and the blob's leftover"

    apply_and_roll_back(found, tmp_path / "p.json", trusted)
    assert decisions(found, tmp_path / "again.json") == before
    # and again, through a second apply and rollback of the same decisions
    apply_and_roll_back(found, tmp_path / "again.json", trusted)
    assert decisions(found, tmp_path / "third.json") == before


def test_a_push_after_the_rollback_is_dated_by_s3_again() -> None:
    """The original time holds only while the object is the one the rollback wrote: a
    re-push (even of the same bytes) a second later has its own time."""
    rel = "repositories/app/_manifests/tags/v1/current/link"
    overlay = Overlay({rel: Restored(etag="e", original=100.0, restored=5000.0)})
    assert overlay.time(rel, Obj("current/link", 71, "e", 5000.4)) == 100.0
    assert overlay.time(rel, Obj("current/link", 71, "e", 5002.0)) == 5002.0  # re-pushed
    assert overlay.time(rel, Obj("current/link", 71, "f", 5000.0)) == 5000.0  # other bytes
    assert overlay.time("repositories/app/x/link", Obj("link", 71, "e", 5000.0)) == 5000.0
