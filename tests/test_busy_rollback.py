"""Rollback on a registry pushed to since the apply (#32), on a filesystem and the memory
bucket in each store's flavour: what was pushed again byte for byte counts as restored;
a tag pushed again stays as pushed, its apply-time version kept in the quarantine
(superseded, purgeable); only something unknown in the way refuses, naming every path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs
import pytest

from regplan import apply, workflow
from regplan.changes.only import NotRemovedError
from regplan.changes.records import State
from regplan.changes.transaction import ApplyResult, RollbackResult
from regplan.decide.selection import Selection
from regplan.demo.samples import build_demo
from regplan.errors import ApplyError, StalePlanError
from regplan.plans import signing
from regplan.plans.plan import TargetKind
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.objects.memory import FLAVOURS
from tests.buckets import InMemory
from tests.helpers import NOW, selection, write_keys, write_plan_file

V2 = "docker/registry/v2"


class Scene:
    """One registry (a filesystem, or a memory bucket): plan, apply, rollback, purge,
    write a file as a push would, and read every file's bytes."""

    def __init__(self, kind: str, base: Path) -> None:
        self.base = base
        self.root = base / "registry"
        build_demo(self.root)
        self.memory = None if kind == "filesystem" else InMemory.of(kind, base, self.root)
        (base / "keys").mkdir()
        self.trusted = signing.trusted_from([write_keys(base / "keys")[1]])

    def plan(self, sel: Selection) -> Path:
        out = self.base / "p.json"
        if self.memory is not None:
            return self.memory.plan(sel, out)
        write_plan_file(self.root, sel, out)
        return out

    def apply(self, plan: Path) -> ApplyResult:
        if self.memory is not None:
            self.memory.trusted = self.trusted
            return self.memory.apply(plan)
        return apply.apply_plan(
            plan_path=plan, trusted=self.trusted, root=None, required=1, now=NOW
        )

    def rollback(self, apply_id: str, only: tuple[str, ...] = ()) -> RollbackResult:
        storage = self.memory.storage if self.memory else FsStorage.locate(self.root)
        return apply.rollback(storage=storage, apply_id=apply_id, now=NOW, only=only)

    def purge(self, apply_id: str) -> None:
        if self.memory is not None:
            self.memory.purge(apply_id)
            return
        storage = FsStorage.locate(self.root)
        apply.purge(storage=storage, apply_id=apply_id, older_than=None, now=NOW)

    def history(self) -> list[tuple[str, int]]:
        found = self.memory.history() if self.memory else apply.records(FsStorage.locate(self.root))
        return [(r.state.value, r.superseded) for r in found]

    def write(self, rel: str, data: bytes) -> None:
        if self.memory is not None:
            self.memory.bucket.put(self.memory.storage.key(rel), data)
            return
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(data)

    def files(self, prefix: str = "docker/") -> dict[str, str]:
        """Every file under ``prefix`` of the rootdirectory: its SHA-256."""
        if self.memory is not None:
            return {
                k.removeprefix(self.memory.storage.key("")): v[2]
                for k, v in self.memory.objects(prefix).items()
            }
        top = self.root / prefix
        return {
            p.relative_to(self.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(top.rglob("*"))
            if p.is_file()
        } if top.exists() else {}  # fmt: skip

    def targets(self, plan: Path, kind: TargetKind) -> list[str]:
        return [t.path for t in workflow.load_plan(plan).targets if t.kind == kind]


KINDS = ["filesystem", *(f for f in sorted(FLAVOURS))]


@pytest.fixture(params=KINDS)
def scene(request: pytest.FixtureRequest, tmp_path: Path) -> Scene:
    return Scene(request.param, tmp_path)


def _gc() -> Selection:
    return attrs.evolve(selection((), ("*",)), gc=True)


def test_a_blob_pushed_again_counts_as_restored(scene: Scene) -> None:
    before = scene.files()
    plan = scene.plan(_gc())
    blob = scene.targets(plan, TargetKind.BLOB)[0]
    data = _bytes(scene, f"{V2}/{blob}/data")
    applied = scene.apply(plan)
    scene.write(f"{V2}/{blob}/data", data)  # the same layer pushed again
    result = scene.rollback(applied.apply_id)
    assert result.superseded == ()
    # a bucket's record of what it moved already proves the same bytes the original
    assert result.same == (1 if scene.memory is None else 0)
    assert scene.files() == before
    assert scene.files("regplan-state/quarantine/") == {}
    assert scene.history() == [("rolled-back", 0)]


def test_a_tag_pushed_again_stays_as_pushed_and_its_old_version_is_purgeable(
    scene: Scene,
) -> None:
    before = scene.files()
    plan = scene.plan(selection(("team/app:v1",)))
    [tag] = scene.targets(plan, TargetKind.TAG)
    applied = scene.apply(plan)
    link = f"{V2}/{tag}/current/link"
    scene.write(link, b"sha256:" + b"e" * 64)  # pushed again, other content
    result = scene.rollback(applied.apply_id)
    assert result.superseded == (tag,)
    now = scene.files()
    assert now[link] == hashlib.sha256(b"sha256:" + b"e" * 64).hexdigest()
    assert {k: v for k, v in now.items() if not k.startswith(f"{V2}/{tag}/")} == {
        k: v for k, v in before.items() if not k.startswith(f"{V2}/{tag}/")
    }
    assert scene.files("regplan-state/quarantine/")  # the old version, kept
    assert scene.history() == [(State.ROLLED_BACK.value, 1)]
    scene.purge(applied.apply_id)
    assert scene.files("regplan-state/quarantine/") == {}


def test_something_unknown_in_the_way_refuses_naming_every_path(scene: Scene) -> None:
    plan = scene.plan(_gc())
    blobs = scene.targets(plan, TargetKind.BLOB)[:2]
    applied = scene.apply(plan)
    for blob in blobs:
        scene.write(f"{V2}/{blob}/data", b"other bytes")
    held = scene.files("regplan-state/quarantine/")
    with pytest.raises(ApplyError, match="2 path") as e:
        scene.rollback(applied.apply_id)
    assert all(b in str(e.value) for b in blobs)
    assert scene.files("regplan-state/quarantine/") == held
    assert scene.history() == [("applied", 0)]


def _bytes(scene: Scene, rel: str) -> bytes:
    if scene.memory is not None:
        return scene.memory.bucket.get(scene.memory.storage.key(rel))
    return (scene.root / rel).read_bytes()


def test_rollback_only_one_image_then_the_rest(scene: Scene) -> None:
    """``--only repo:tag`` brings back that image whole (tag, revision, manifest, config,
    layers, layer links) and leaves the rest quarantined; the apply shows as partly rolled
    back; a full rollback then leaves the tree as before the apply, file for file."""
    before = scene.files()
    plan = scene.plan(attrs.evolve(selection(("team/app:v1", "old/repo:2019")), gc=True))
    applied = scene.apply(plan)
    result = scene.rollback(applied.apply_id, ("team/app:v1",))
    assert not result.whole and result.restored > 1
    now = scene.files()
    v1 = f"{V2}/repositories/team/app/_manifests/tags/v1/current/link"
    assert v1 in now and now[v1] == before[v1]
    assert not any("repositories/old/repo/_manifests/tags/2019" in k for k in now)
    assert scene.history() == [("partly-rolled-back", 0)]
    with pytest.raises(NotRemovedError, match="nearest: team/app:v1"):
        scene.rollback(applied.apply_id, ("team/app:v9",))
    assert scene.files() == now
    rest = scene.rollback(applied.apply_id)
    assert rest.whole and rest.fingerprint_ok, rest.changed
    assert scene.files() == before
    assert scene.history() == [("rolled-back", 0)]
    with pytest.raises(StalePlanError, match="already rolled back"):
        scene.rollback(applied.apply_id, ("team/app:v1",))
