"""Crash safety on object storage (S3, Azure Blob, GCS): SIGKILL an apply or a rollback
at every request that writes to the bucket, then run the same command again (or roll
back); the bucket ends object for object, and push time for push time, where it should.

Each command runs in a subprocess through a wrapper around the cloud's bucket class
that kills its own process at the n-th request of one kind (no test hook lives in
regplan)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

from regplan import workflow
from regplan.changes.records import ApplyRecord, State
from regplan.demo.samples import build_scale
from regplan.scan.inventory import ProblemCode
from regplan.storage import location
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import ObjectStorage
from regplan.storage.objects.objstore import BucketStore
from tests import azserver, gcsserver, s3server
from tests.helpers import plant_leftovers, write_keys

WRAPPER = """
import atexit, importlib, json, os, signal, sys
s = importlib.import_module(os.environ["BUCKET_MODULE"])
cls = getattr(s, os.environ["BUCKET_CLASS"])
if hasattr(s, "DELETE_BATCH"):
    s.DELETE_BATCH = int(os.environ.get("DELETE_BATCH", "1000"))
KINDS = tuple(os.environ["KINDS"].split(","))
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
    setattr(cls, name, counted(name, getattr(cls, name)))
if os.environ.get("COUNT_TO"):
    atexit.register(lambda: open(os.environ["COUNT_TO"], "w").write(json.dumps(calls)))
from regplan.cli import cli
cli(sys.argv[1:], prog_name="regplan")
"""
"""Runs regplan and kills it (SIGKILL) at the n-th request of one kind (KILL_AT=kind:n);
every request that writes to the bucket is one of KINDS. DELETE_BATCH makes one
batch's deletes several requests, as a large apply's are (S3 takes 1,000 keys each,
Azure 256; GCS deletes one key per request)."""


@attrs.frozen
class Cloud:
    """One object store under test: its bucket class, the methods that write (each a
    request, but a batch delete), its test server fixture and helper module."""

    module: str
    cls: str
    kinds: tuple[str, ...]
    fixture: str
    helpers: ModuleType
    deletes: str
    """The kind each delete request is."""
    repos: int = 2
    tags: int = 5
    batch: int = 50
    """Keys per delete request in the test (several requests per apply)."""


CLOUDS = {
    "s3": Cloud(
        "regplan.storage.s3.bucket", "S3Bucket", ("put", "copy", "delete_batch", "delete_one"),
        "s3server", s3server, "delete_batch",
    ),
    "azure": Cloud(
        "regplan.storage.azure.container", "AzureBucket",
        ("put", "copy", "_delete_batch", "delete_one"), "azurite", azserver, "_delete_batch",
        repos=1, tags=4, batch=20,
    ),
    "gcs": Cloud(
        "regplan.storage.gcs.gcsbucket", "GcsBucket", ("put", "copy", "delete_one"),
        "gcs_emulator", gcsserver, "delete_one", repos=1, tags=4,
    ),
}  # fmt: skip
"""The emulators answer several times slower than moto: their trees are smaller (114
keys, 70 of them moved, against 271 and 174), which keeps every kind of write."""

Run = subprocess.CompletedProcess[str]


def pushed(storage: ObjectStorage, cache: Path) -> dict[tuple[str, str], float]:
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
    def __init__(self, cloud: Cloud, server: Any, base: Path) -> None:
        self.cloud = cloud
        self.env = {
            **server.env(),
            "REGPLAN_CACHE_DIR": str(base / "cache"),
            "BUCKET_MODULE": cloud.module,
            "BUCKET_CLASS": cloud.cls,
            "KINDS": ",".join(cloud.kinds),
        }
        self.storage: ObjectStorage = server.storage()
        build_scale(base / "fs", repos=cloud.repos, tags=cloud.tags, pushes=3)
        plant_leftovers(base / "fs")
        cloud.helpers.upload_tree(base / "fs", self.storage)
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
        self.before = self.objects()
        self.pushed = pushed(self.storage, self.cache)
        prefix = self.storage.key("docker/registry/v2/")
        self.moving = [
            k
            for k in self.before
            if any(k.startswith(f"{prefix}{t.path}/") or k == prefix + t.path for t in self.targets)
        ]
        assert sum(t.kind.is_file for t in self.targets) == 2

    def objects(self, prefix: str = "docker/") -> dict[str, tuple[int, str, str]]:
        """key -> (size, content hash, SHA-256 of the bytes), through the cloud's own SDK."""
        found: dict[str, tuple[int, str, str]] = self.cloud.helpers.objects(self.storage, prefix)
        return found

    def run(self, *args: str, kill: str = "", count: bool = False) -> Run:
        env = {**self.env, "KILL_AT": kill, "DELETE_BATCH": str(self.cloud.batch)}
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
            self.objects() == self.before
            and pushed(self.storage, self.cache) == self.pushed
            and not self.objects("regplan-state/quarantine/")
        )

    def applied(self) -> bool:
        """The docker tree holds exactly what the plan leaves."""
        now = self.objects()
        return now.keys() == self.before.keys() - set(self.moving) and all(
            now[k] == self.before[k] for k in now
        )

    def history(self) -> list[ApplyRecord]:
        return BucketStore(self.storage).records()

    def apply_id(self) -> str:
        return self.history()[-1].apply_id


@pytest.fixture(params=sorted(CLOUDS))
def scene(request: pytest.FixtureRequest, tmp_path: Path) -> Bucketed:
    cloud = CLOUDS[request.param]
    return Bucketed(cloud, request.getfixturevalue(cloud.fixture), tmp_path)


def points(counts: dict[str, int]) -> list[str]:
    """Every write request of a run, but copies only at the first, a middle and the last
    (each is one key: what holds for one holds for all), and so deletes of one key per
    request (GCS) once there are many."""
    out = []
    for kind, n in sorted(counts.items()):
        sampled = kind == "copy" or (kind == "delete_one" and n > 20)
        picks = sorted({1, (n + 1) // 2, n}) if sampled else range(1, n + 1)
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
    assert counts[scene.cloud.deletes] >= 3 and counts["copy"] > 20, counts
    assert scene.rollback().returncode == 0
    assert scene.restored()
    for n, point in enumerate(points(counts)):
        began = len(scene.history())
        r = scene.apply("--break-lock", kill=point)
        assert r.returncode == -signal.SIGKILL, (point, r.stderr)
        if len(scene.history()) == began:  # killed before it began: nothing to do
            assert scene.objects() == scene.before, point
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
    assert counts[scene.cloud.deletes] >= 3, counts
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
    assert not scene.objects("regplan-state/lock")
