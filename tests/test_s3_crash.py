"""Crash safety on S3: SIGKILL an apply or a rollback at every request that writes to
the bucket, then run the same command again (or roll back); the bucket ends object
for object, and push time for push time, where it should.

Each command runs in a subprocess through a wrapper around the bucket that kills its
own process at the n-th request of one kind (no test hook lives in regplan)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from regplan import workflow
from regplan.changes.records import ApplyRecord, State
from regplan.demo.samples import build_scale
from regplan.scan.inventory import ProblemCode
from regplan.storage import location
from regplan.storage.objects import objscan
from regplan.storage.objects.objstore import BucketStore
from regplan.storage.s3.bucket import S3Storage
from tests.helpers import plant_leftovers, write_keys
from tests.s3server import S3Server, objects, upload_tree

WRAPPER = """
import atexit, json, os, signal, sys
import regplan.storage.s3.bucket as s
s.DELETE_BATCH = int(os.environ.get("DELETE_BATCH", "1000"))
KINDS = ("put", "copy", "delete_batch", "delete_one")
kind, _, at = os.environ.get("KILL_AT", ":0").partition(":")
calls = dict.fromkeys(KINDS, 0)
def counted(name, real):
    def call(self, *args, **kwargs):
        calls[name] += 1
        if name == kind and calls[name] == int(at):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, *args, **kwargs)
    return call
for name in KINDS:
    setattr(s.S3Bucket, name, counted(name, getattr(s.S3Bucket, name)))
if os.environ.get("COUNT_TO"):
    atexit.register(lambda: open(os.environ["COUNT_TO"], "w").write(json.dumps(calls)))
from regplan.cli import cli
cli(sys.argv[1:], prog_name="regplan")
"""
"""Runs regplan and kills it (SIGKILL) at the n-th request of one kind (KILL_AT=kind:n);
every request that writes to the bucket is one of KINDS. DELETE_BATCH makes one
batch's deletes several requests, as a large apply's are (S3 takes 1,000 keys each)."""

DELETE_BATCH = 50
Run = subprocess.CompletedProcess[str]


def pushed(storage: S3Storage, cache: Path) -> dict[tuple[str, str], float]:
    """Every tag's push time and every leftover temporary file's age, as a plan would read
    them."""
    inv = objscan.scan(storage, cache=cache)
    times = {
        (r, name): tag.pushed_at
        for r, repo in inv.repositories.items()
        for name, tag in repo.tags.items()
    }
    for p in inv.problems:
        if p.code is ProblemCode.LEFTOVER_TEMP:
            times[("leftover", p.path)] = inv.mtimes[p.path]
    return times


class Bucketed:
    def __init__(self, server: S3Server, base: Path) -> None:
        self.env = {**server.env(), "REGPLAN_CACHE_DIR": str(base / "cache")}
        self.storage: S3Storage = server.storage()
        build_scale(base / "fs", repos=2, tags=5, pushes=3)
        plant_leftovers(base / "fs")
        upload_tree(base / "fs", self.storage)
        time.sleep(2.1)  # the leftovers a second old, as a plan's whole-second clock sees
        self.counts = base / "counts.json"
        self.cache = base / "scan-cache"
        self.key, self.pub = write_keys(base)
        self.plan = base / "p.json"
        r = self.run(
            "plan", "--root", self.storage.root, "--key", str(self.key), "-o", str(self.plan),
            "--untagged", "*", "--gc", "--leftovers-older-than", "1s", "-q",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        self.targets = workflow.load_plan(self.plan).targets
        self.before = objects(self.storage)
        self.pushed = pushed(self.storage, self.cache)
        prefix = self.storage.key("docker/registry/v2/")
        self.moving = [
            k
            for k in self.before
            if any(k.startswith(f"{prefix}{t.path}/") or k == prefix + t.path for t in self.targets)
        ]
        assert sum(t.kind.is_file for t in self.targets) == 2

    def run(self, *args: str, kill: str = "", count: bool = False) -> Run:
        env = {**self.env, "KILL_AT": kill, "DELETE_BATCH": str(DELETE_BATCH)}
        if count:
            env["COUNT_TO"] = str(self.counts)
        return subprocess.run(
            [sys.executable, "-c", WRAPPER, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    def apply(self, *extra: str, kill: str = "", count: bool = False) -> Run:
        return self.run(
            "apply", str(self.plan), "--trust", str(self.pub), "-q", *extra, kill=kill, count=count
        )

    def rollback(self, *extra: str, kill: str = "", count: bool = False) -> Run:
        return self.run(
            "rollback", self.apply_id(), "--root", self.storage.root, "-q", *extra,
            kill=kill, count=count,
        )  # fmt: skip

    def requests(self) -> dict[str, int]:
        """What the last counted run asked of the bucket, by kind."""
        return dict(json.loads(self.counts.read_text()))

    def restored(self) -> bool:
        """Every object as before the apply, every tag's push time too, no quarantine."""
        return (
            objects(self.storage) == self.before
            and pushed(self.storage, self.cache) == self.pushed
            and not objects(self.storage, "regplan-state/quarantine/")
        )

    def applied(self) -> bool:
        """The docker tree holds exactly what the plan leaves."""
        now = objects(self.storage)
        return now.keys() == self.before.keys() - set(self.moving) and all(
            now[k] == self.before[k] for k in now
        )

    def history(self) -> list[ApplyRecord]:
        return BucketStore(self.storage).records()

    def apply_id(self) -> str:
        return self.history()[-1].apply_id


@pytest.fixture
def scene(s3server: S3Server, tmp_path: Path) -> Bucketed:
    return Bucketed(s3server, tmp_path)


def points(counts: dict[str, int]) -> list[str]:
    """Every write request of a run, but copies only at the first, a middle and the last
    (each is one key: what holds for one holds for all)."""
    out = []
    for kind, n in sorted(counts.items()):
        picks = sorted({1, (n + 1) // 2, n}) if kind == "copy" else range(1, n + 1)
        out += [f"{kind}:{i}" for i in picks if i >= 1]
    return out


def test_an_apply_killed_at_any_request_finishes_or_undoes_by_running_again(
    scene: Bucketed,
) -> None:
    """SIGKILL at every write an apply makes (each put of the lock, plan, state, index,
    journal and moves; each copy kind; each delete request; the lock's release): running
    apply again finishes it (the tree as planned), and rollback then restores every
    object and every push time; or rollback alone undoes the killed apply."""
    r = scene.apply(count=True)
    assert r.returncode == 0, r.stderr
    counts = scene.requests()
    assert counts["delete_batch"] >= 3 and counts["copy"] > 20, counts
    assert scene.rollback().returncode == 0
    assert scene.restored()
    for n, point in enumerate(points(counts)):
        began = len(scene.history())
        r = scene.apply("--break-lock", kill=point)
        assert r.returncode == -signal.SIGKILL, (point, r.stderr)
        if len(scene.history()) == began:  # killed before it began: nothing to do
            assert objects(scene.storage) == scene.before, point
            continue
        if n % 2 == 0:  # finish it
            r = scene.apply("--break-lock")
            assert r.returncode in (0, 4), (point, r.stderr)  # 4: it had finished
            assert scene.applied(), point
            plan = workflow.load_plan(scene.plan)
            assert location.digest(scene.storage).digest == plan.fingerprint.after
        r = scene.rollback("--break-lock")  # undo it (finished or not)
        assert r.returncode == 0, (point, r.stderr)
        assert scene.restored(), point


def test_a_rollback_killed_at_any_request_finishes_by_running_again(scene: Bucketed) -> None:
    """SIGKILL at every write a rollback makes (between two DeleteObjects of the
    quarantine too): the same rollback again restores every object and push time, and
    the plan can be applied again."""
    assert scene.apply().returncode == 0
    r = scene.rollback(count=True)
    assert r.returncode == 0, r.stderr
    counts = scene.requests()
    assert counts["delete_batch"] >= 3, counts
    assert scene.restored()
    for point in points(counts):
        assert scene.apply().returncode == 0
        r = scene.rollback(kill=point)
        assert r.returncode == -signal.SIGKILL, (point, r.stderr)
        r = scene.rollback("--break-lock")
        done = r.returncode == 0 or "already rolled back" in r.stderr  # killed at the release
        assert done, (point, r.returncode, r.stderr)
        assert scene.restored(), point
        assert scene.history()[-1].state == State.ROLLED_BACK, point


def test_a_killed_apply_rolls_back_without_resuming(scene: Bucketed) -> None:
    """Rollback of an apply killed half way: what was copied but not yet deleted is not
    copied back over itself; every object is as before."""
    r = scene.apply(kill=f"copy:{len(scene.moving) // 2}")
    assert r.returncode == -signal.SIGKILL
    r = scene.rollback("--break-lock")
    assert r.returncode == 0, r.stderr
    assert scene.restored()
    assert not objects(scene.storage, "regplan-state/lock")
