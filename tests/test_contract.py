"""The transaction's contract, the same tests on every backend (the backend a parameter):
apply then rollback is byte for byte (object for object) the tree before, folders and
files (a write's leftover) alike; purge empties the quarantine; a held lock, a stale
plan and a tampered plan move nothing; an apply killed between two batches finishes by
running it again. A new backend passes these before anything above the storage seam
may use it.

The backends: a filesystem, and the memory bucket in the flavour of each object store
(S3, Azure Blob, GCS; tests/test_bucket_reads.py proves its primitives are the real
stores'). Everything goes through ``regplan.workflow`` and ``regplan.apply``, in this
process; time is the memory bucket's injected clock. The kill comes from the moves'
progress report (every backend reports after each batch): the process dies there, its
bucket sends nothing more (``tests.buckets.Crashing``), its flock goes with it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from regplan import apply, workflow
from regplan.changes.transaction import ApplyResult
from regplan.decide.selection import Selection
from regplan.demo.samples import BASE, Registry, build_demo, build_scale, image
from regplan.errors import ApplyError, LockHeldError, SignatureError, StalePlanError
from regplan.plans import signing
from regplan.progress import Progress
from regplan.storage import location
from regplan.storage.location import Location
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Bucket, ObjectStorage
from regplan.storage.objects.memory import FLAVOURS, MemoryBucket
from tests.buckets import Clock, Crashing, Killed, expire_lease, objects, upload_tree
from tests.helpers import KEY, docker_hashes, plant_leftovers, selection, write_keys

SELECTION = attrs.evolve(selection((), ("*",)), gc=True, leftovers_older_than="1s")
"""Folders of every kind an --untagged --gc plan removes, and the files a write left
(the one target that is a file)."""


@attrs.define
class Backend:
    """One registry's storage under test: where it is, what it holds now, its clock."""

    root: Path | ObjectStorage
    """What ``--root`` names: a path, or the bucket's storage."""
    snapshot: Callable[[], dict[str, object]]
    quarantine: Callable[[], dict[str, object]]
    push: Callable[[], None]
    now: Callable[[], datetime]
    bucket: MemoryBucket | None = None

    @property
    def where(self) -> Location:
        return location.locate(self.root)

    def through(self, wrapper: Bucket | None) -> Path | ObjectStorage:
        """This storage, every request through ``wrapper`` (object storage only)."""
        if wrapper is None or self.bucket is None:
            return self.root
        return self.bucket.storage.opening(wrapper)

    def crashing(self) -> Crashing | None:
        """A bucket that dies when the process does (none on a filesystem)."""
        return None if self.bucket is None else Crashing(self.bucket)

    def after_kill(self) -> None:
        """What a killed apply leaves that an hour undoes: its lease runs out (a flock
        went with its process)."""
        if self.bucket is not None:
            expire_lease(self.bucket)


Tree = Callable[[Path], None]


def demo(root: Path) -> None:
    build_demo(root)


def big(root: Path) -> None:
    """More targets than one batch moves."""
    build_scale(root, repos=4, tags=10, pushes=3, index_every=0)


def _filesystem(base: Path, tree: Tree, _: pytest.MonkeyPatch) -> Backend:
    root = base / "registry"
    tree(root)
    plant_leftovers(root, time.time() - 3600)

    def quarantine() -> dict[str, object]:
        q = root / "regplan-state" / "quarantine"
        return {p.relative_to(q).as_posix(): 1 for p in q.rglob("*") if p.is_file()}

    def push() -> None:
        Registry.create(root).push("team/new", image([BASE]), "v1")

    return Backend(
        root=root,
        snapshot=lambda: dict(docker_hashes(root)),
        quarantine=quarantine,
        push=push,
        now=lambda: datetime.now(UTC),
    )


def _memory(flavour: str, base: Path, tree: Tree, monkeypatch: pytest.MonkeyPatch) -> Backend:
    """The tree in a memory bucket, uploaded at the clock's time; a minute later."""
    clock = Clock()
    bucket = MemoryBucket(flavour, clock=clock)
    tree(base / "fs")
    plant_leftovers(base / "fs")
    upload_tree(base / "fs", bucket)
    clock.advance(60)
    monkeypatch.setenv(objscan.CACHE_ENV, str(base / "cache"))

    def push() -> None:
        clock.advance(1)
        Registry.create(base / "more").push("team/new", image([BASE]), "v1")
        upload_tree(base / "more", bucket)

    return Backend(
        root=bucket.storage,
        snapshot=lambda: dict(objects(bucket)),
        quarantine=lambda: dict(objects(bucket, "regplan-state/quarantine/")),
        push=push,
        now=clock.now,
        bucket=bucket,
    )


BACKENDS = ["filesystem", *(f"memory-{f}" for f in sorted(FLAVOURS))]


@pytest.fixture
def tree() -> Tree:
    return demo


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> Backend:
    name: str = request.param
    if name == "filesystem":
        return _filesystem(tmp_path, tree, monkeypatch)
    return _memory(name.removeprefix("memory-"), tmp_path, tree, monkeypatch)


@pytest.fixture
def trusted(tmp_path: Path) -> list[signing.TrustedKey]:
    return signing.trusted_from([write_keys(tmp_path)[1]])


def make_plan(backend: Backend, out: Path, sel: Selection = SELECTION) -> Path:
    with workflow.make_plan(
        storage=backend.where, selection=sel, argv=("regplan", "plan"), key=KEY,
        signer="test-planner", now=backend.now(),
    ) as draft:  # fmt: skip
        workflow.write_plan(draft, out)
    return out


@pytest.fixture
def plan(backend: Backend, tmp_path: Path) -> Path:
    out = make_plan(backend, tmp_path / "p.json")
    targets = json.loads(out.read_bytes())["targets"]
    assert sum(t["kind"] == "leftover" for t in targets) == 2
    return out


def run_apply(
    backend: Backend,
    plan: Path,
    trusted: list[signing.TrustedKey],
    *,
    via: Bucket | None = None,
    progress: Progress | None = None,
    break_lock: bool = False,
    exact: bool = False,
) -> ApplyResult:
    return apply.apply_plan(
        plan_path=plan, trusted=trusted, root=backend.through(via), required=1,
        now=backend.now(), progress=progress, break_lock=break_lock, exact=exact,
    )  # fmt: skip


def rollback(backend: Backend, apply_id: str) -> None:
    result = apply.rollback(storage=backend.where, apply_id=apply_id, now=backend.now())
    assert result.fingerprint_ok


def history(backend: Backend) -> list[tuple[str, str]]:
    return [(r.apply_id, r.state.value) for r in apply.records(backend.where)]


def test_apply_then_rollback_is_the_tree_before(
    backend: Backend, plan: Path, trusted: list[signing.TrustedKey]
) -> None:
    before = backend.snapshot()
    applied = run_apply(backend, plan, trusted)
    assert applied.fingerprint_ok and backend.snapshot() != before
    assert backend.quarantine()
    rollback(backend, applied.apply_id)
    assert backend.snapshot() == before
    assert not backend.quarantine()
    assert history(backend) == [(applied.apply_id, "rolled-back")]
    assert run_apply(backend, plan, trusted).fingerprint_ok  # a rolled-back plan again


def test_purge_deletes_the_quarantine_and_says_so(
    backend: Backend, plan: Path, trusted: list[signing.TrustedKey]
) -> None:
    applied = run_apply(backend, plan, trusted)
    after = backend.snapshot()
    apply.purge(storage=backend.where, apply_id=applied.apply_id, older_than=None,
                now=backend.now())  # fmt: skip
    assert not backend.quarantine()
    assert backend.snapshot() == after
    assert history(backend) == [(applied.apply_id, "purged")]
    with pytest.raises(ApplyError):
        rollback(backend, applied.apply_id)
    with pytest.raises(StalePlanError, match="already applied"):
        run_apply(backend, plan, trusted)


def test_a_stale_or_tampered_plan_moves_nothing(
    backend: Backend, plan: Path, trusted: list[signing.TrustedKey], tmp_path: Path
) -> None:
    raw = json.loads(plan.read_bytes())
    raw["targets"] = raw["targets"][:1]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(raw))
    before = backend.snapshot()
    with pytest.raises(SignatureError):
        run_apply(backend, tampered, trusted)
    backend.push()
    pushed = backend.snapshot()
    with pytest.raises(StalePlanError, match="team/new"):
        run_apply(backend, plan, trusted, exact=True)
    assert backend.snapshot() == pushed != before
    assert history(backend) == []


def test_an_unrelated_push_does_not_stop_an_apply(
    backend: Backend, plan: Path, trusted: list[signing.TrustedKey]
) -> None:
    """A push since planning that touches nothing the plan removes: every target moves,
    the new image stays whole, and the apply's final check holds (#32)."""
    planned = {t["path"] for t in json.loads(plan.read_bytes())["targets"]}
    backend.push()
    pushed = backend.snapshot()
    result = run_apply(backend, plan, trusted)
    assert result.skipped == ()
    assert result.fingerprint_ok, result.changed
    new = {k: v for k, v in pushed.items() if "team/new" in k}
    after = backend.snapshot()
    assert new and all(after.get(k) == v for k, v in new.items())
    assert result.moved == len(planned)


def test_a_held_lock_moves_nothing(
    backend: Backend, plan: Path, trusted: list[signing.TrustedKey]
) -> None:
    """A second apply while one runs (from the first one's progress report: it holds the
    lock) is refused naming the holder, and changes nothing."""
    plan_id = json.loads(plan.read_bytes())["plan_id"]
    refused: list[str] = []

    def second(done: int, total: int) -> None:
        del done, total
        if refused:
            return
        now = backend.snapshot()
        with pytest.raises(LockHeldError) as e:
            run_apply(backend, plan, trusted)
        refused.append(str(e.value))
        assert backend.snapshot() == now

    first = run_apply(backend, plan, trusted, progress=second)
    assert f"apply {plan_id}" in refused[0]
    assert first.fingerprint_ok
    assert history(backend) == [(first.apply_id, "applied")]


@pytest.mark.parametrize("tree", [big])
def test_an_apply_killed_between_batches_finishes_by_running_it_again(
    backend: Backend, trusted: list[signing.TrustedKey], tmp_path: Path
) -> None:
    plan = make_plan(backend, tmp_path / "p.json")
    before = backend.snapshot()
    dying = backend.crashing()

    def die(done: int, total: int) -> None:
        assert 0 < done < total  # a batch moved, another not yet
        if dying is not None:
            dying.kill()
        raise Killed("between two batches")

    with pytest.raises(Killed):
        run_apply(backend, plan, trusted, via=dying, progress=die)
    [(apply_id, state)] = history(backend)
    assert state == "applying"
    partly = backend.snapshot()
    assert partly != before  # part of it moved
    backend.after_kill()
    resumed = run_apply(backend, plan, trusted, break_lock=True)
    assert resumed.resumed and resumed.apply_id == apply_id
    assert resumed.fingerprint_ok and backend.snapshot() != partly
    rollback(backend, apply_id)
    assert backend.snapshot() == before
