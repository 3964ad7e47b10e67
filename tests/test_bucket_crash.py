"""Crash safety on object storage (the memory bucket in the flavour of S3, Azure Blob and
GCS): kill an apply or a rollback at every request that writes to the bucket, before
the request reached the store and after the store did it; then the same command again
finishes (or rollback undoes it), and the bucket ends object for object, and push time
for push time, where it should.

The kill is a wrapping bucket (``tests.buckets.Crashing``): at the chosen request it
raises ``Killed`` (a BaseException, which regplan never catches) and sends nothing more,
as a process killed there would; the lease it held is left in the bucket, and runs out
(``expire_lease``) before the next command breaks it. Everything runs in this process
through ``regplan.apply``; the bucket's clock moves a second between two commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from regplan import workflow
from regplan.changes.records import State
from regplan.changes.transaction import ApplyResult, RollbackResult
from regplan.demo.samples import build_scale
from regplan.errors import ApplyError, RegplanError, StalePlanError
from regplan.storage import location
from regplan.storage.objects.bucket import Bucket
from regplan.storage.objects.memory import FLAVOURS
from tests.buckets import (
    Counting,
    Crashing,
    Faulty,
    InMemory,
    Killed,
    Wrapping,
    every,
    expire_lease,
    pushed,
    upload_tree,
)
from tests.helpers import plant_leftovers, selection

SELECTION = attrs.evolve(selection((), ("*",)), gc=True, leftovers_older_than="1s")
DELETE_BATCH = {"s3": 50, "azure": 20, "gcs": 1}
"""Keys per delete request: several requests per apply, as a large apply's are (S3 takes
1,000 keys a request, Azure 256; GCS deletes one key per request)."""

Point = tuple[tuple[str, int], bool]
"""(the request: its kind and number), and whether the store did it before the kill."""


class Scene:
    """A registry of 2 repositories x 5 tags pushed 3 times (271 keys, 174 of them moved,
    two of them leftovers of a killed write) in a memory bucket, and its plan."""

    def __init__(self, flavour: str, base: Path) -> None:
        self.reg = InMemory.of(flavour, base)
        self.batch = DELETE_BATCH[flavour]
        build_scale(base / "fs", repos=2, tags=5, pushes=3)
        plant_leftovers(base / "fs")
        upload_tree(base / "fs", self.reg.bucket)
        self.reg.clock.advance(60)
        self.cache = base / "scan-cache"
        self.plan = self.reg.plan(SELECTION, base / "p.json")
        self.targets = workflow.load_plan(self.plan).targets
        assert sum(t.kind.is_file for t in self.targets) == 2
        self.before = self.reg.objects()
        self.pushed = pushed(self.reg.storage, self.cache)
        prefix = self.reg.storage.key("docker/registry/v2/")
        self.moving = [
            k
            for k in self.before
            if any(k.startswith(f"{prefix}{t.path}/") or k == prefix + t.path for t in self.targets)
        ]

    def wrap(self, point: Point | None = None) -> Wrapping:
        """The bucket as one command's client sends its requests (killed at ``point``)."""
        if point is None:
            return Wrapping(self.reg.bucket, batch=self.batch)
        (kind, n), after = point
        return Crashing(self.reg.bucket, at=(kind, n), after=after, batch=self.batch)

    def apply(self, via: Bucket | None = None, *, break_lock: bool = False) -> ApplyResult:
        self.reg.clock.advance(1)
        return self.reg.apply(self.plan, via=via or self.wrap(), break_lock=break_lock)

    def rollback(self, via: Bucket | None = None, *, break_lock: bool = False) -> RollbackResult:
        self.reg.clock.advance(1)
        apply_id = self.reg.history()[-1].apply_id
        return self.reg.rollback(apply_id, via=via or self.wrap(), break_lock=break_lock)

    def killed(self, command: str, point: Point) -> None:
        """Run ``command`` killed at ``point``; its lease (if it left one) then runs out."""
        with pytest.raises(Killed):
            if command == "apply":
                self.apply(self.wrap(point), break_lock=True)
            else:
                self.rollback(self.wrap(point))
        expire_lease(self.reg.bucket)

    def restored(self) -> bool:
        """Every object as before the apply, every tag's push time too, no quarantine."""
        return (
            self.reg.objects() == self.before
            and pushed(self.reg.storage, self.cache) == self.pushed
            and not self.reg.objects("regplan-state/quarantine/")
        )

    def applied(self) -> bool:
        """The docker tree holds exactly what the plan leaves."""
        now = self.reg.objects()
        return now.keys() == self.before.keys() - set(self.moving) and all(
            now[k] == self.before[k] for k in now
        )


@pytest.fixture(params=sorted(FLAVOURS))
def scene(request: pytest.FixtureRequest, tmp_path: Path) -> Scene:
    return Scene(request.param, tmp_path)


def points(counts: dict[str, int]) -> Iterator[Point]:
    """Every write request of a run, before and after the store did it; but copies only
    at the first, a middle and the last (each is one key: what holds for one holds for
    all), and so deletes of one key per request (GCS) once there are many."""
    for request in every(counts, lambda kind, n: kind == "copy" or n > 20):
        yield request, False
        yield request, True


def counted(scene: Scene, command: str) -> dict[str, int]:
    """The write requests of one whole run of ``command``, by kind."""
    counting = Counting(scene.reg.bucket, batch=scene.batch)
    if command == "apply":
        scene.apply(counting)
    else:
        scene.rollback(counting)
    return counting.writes()


def test_an_apply_killed_at_any_request_finishes_or_undoes_by_running_again(
    scene: Scene,
) -> None:
    """Killed at every write an apply makes (each put of the lock, plan, state, index,
    journal and moves; each copy kind; each delete request; the lock's release), before
    and after the store did it: running apply again finishes it (the tree as planned),
    and rollback then restores every object and every push time; or rollback alone
    undoes the killed apply."""
    counts = counted(scene, "apply")
    assert counts["delete"] >= 3 and counts["copy"] > 20, counts
    scene.rollback()
    assert scene.restored()
    plan = workflow.load_plan(scene.plan)
    for n, point in enumerate(points(counts)):
        began = len(scene.reg.history())
        scene.killed("apply", point)
        if len(scene.reg.history()) == began:  # killed before it began: nothing to do
            assert scene.reg.objects() == scene.before, point
            continue
        if (n // 2 + point[1]) % 2 == 0:  # finish it (of each request's two kills, one)
            try:
                scene.apply(break_lock=True)
            except StalePlanError as e:  # it had finished
                assert "already applied" in str(e), point
            assert scene.applied(), point
            assert location.digest(scene.reg.storage).digest == plan.fingerprint.after
        scene.rollback(break_lock=True)  # undo it (finished or not)
        assert scene.restored(), point


def test_a_rollback_killed_at_any_request_finishes_by_running_again(scene: Scene) -> None:
    """Killed at every write a rollback makes (between two deletes of the quarantine
    too), before and after the store did it: the same rollback again restores every
    object and push time, and the plan can be applied again."""
    scene.apply()
    counts = counted(scene, "rollback")
    assert counts["delete"] >= 3, counts
    assert scene.restored()
    for point in points(counts):
        scene.apply()
        scene.killed("rollback", point)
        try:
            scene.rollback(break_lock=True)
        except ApplyError as e:  # killed at the release: it had finished
            assert "already rolled back" in str(e), point
        assert scene.restored(), point
        assert scene.reg.history()[-1].state == State.ROLLED_BACK, point


def test_a_killed_apply_rolls_back_without_resuming(scene: Scene) -> None:
    """Rollback of an apply killed half way: what was copied but not yet deleted is not
    copied back over itself; every object is as before, and no lock is left."""
    scene.killed("apply", (("copy", len(scene.moving) // 2), False))
    scene.rollback(break_lock=True)
    assert scene.restored()
    assert not scene.reg.bucket.snapshot(scene.reg.storage.key("regplan-state/lock"))


FAULTS = [(("put", 3), False), (("copy", 10), False), (("copy", 10), True),
          (("delete", 2), False), (("delete", 2), True)]  # fmt: skip
"""The store refuses the apply's state, a copy, a delete request; or does the copy or the
delete and its answer is lost."""


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f"{f[0][0]}{f[0][1]}-{f[1]}")
def test_an_apply_the_store_fails_finishes_by_running_it_again(scene: Scene, fault: Point) -> None:
    """A failed request stops the apply with one error and releases the lock (the
    process lives on); the same apply then finishes, and rollback restores everything."""
    (kind, n), after = fault
    faulty = Faulty(scene.reg.bucket, at=[(kind, n)], after=after, batch=scene.batch)
    with pytest.raises(RegplanError, match="injected fault"):
        scene.apply(faulty)
    assert faulty.failed == [(kind, n)]
    assert not scene.reg.bucket.snapshot(scene.reg.storage.key("regplan-state/lock"))
    assert scene.apply().fingerprint_ok
    assert scene.applied()
    scene.rollback()
    assert scene.restored()
