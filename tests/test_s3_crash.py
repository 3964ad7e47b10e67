"""Crash safety on S3: SIGKILL an apply at arbitrary copies and deletes, then resume it
or roll it back; the bucket ends object for object where it should.

The apply runs in a subprocess through a wrapper that kills its own process at the
n-th server-side copy or the n-th batch delete (no test hook lives in regplan)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from regplan import location, workflow
from regplan.demo import build_scale
from regplan.s3 import S3Storage
from tests.helpers import KEY, pem, write_pub
from tests.s3server import S3Server, objects, upload_tree

WRAPPER = """
import os, signal, sys
import regplan.s3 as s
kill = {"copy": int(os.environ.get("KILL_AT_COPY", "0")),
        "delete": int(os.environ.get("KILL_AT_DELETE", "0"))}
calls = {"copy": 0, "delete": 0}
real = {"copy": s.Bucket.copy, "delete": s.Bucket.delete}
def counted(name):
    def call(self, *args):
        calls[name] += 1
        if calls[name] == kill[name]:
            os.kill(os.getpid(), signal.SIGKILL)
        return real[name](self, *args)
    return call
s.Bucket.copy, s.Bucket.delete = counted("copy"), counted("delete")
from regplan.cli import cli
cli(sys.argv[1:], prog_name="regplan")
"""


class Bucketed:
    def __init__(self, server: S3Server, base: Path) -> None:
        self.env = {**server.env(), "REGPLAN_CACHE_DIR": str(base / "cache")}
        self.storage: S3Storage = server.storage()
        build_scale(base / "fs", repos=2, tags=5, pushes=3)
        upload_tree(base / "fs", self.storage)
        self.key = base / "k"
        self.pub = write_pub(KEY, base / "k.pub")
        self.plan = base / "p.json"
        self.key.write_bytes(pem(KEY))
        self.key.chmod(0o600)
        r = self.run(
            "plan", "--root", self.storage.root, "--key", str(self.key), "-o", str(self.plan),
            "--untagged", "*", "--gc", "-q",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        self.targets = workflow.load_plan(self.plan).targets
        self.before = objects(self.storage)
        prefix = self.storage.key("docker/registry/v2/")
        self.moving = [
            k for k in self.before if any(k.startswith(f"{prefix}{t.path}/") for t in self.targets)
        ]

    def run(self, *args: str, **kill: int) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **{f"KILL_AT_{k.upper()}": str(v) for k, v in kill.items()}}
        return subprocess.run(
            [sys.executable, "-c", WRAPPER, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    def apply(self, *extra: str, **kill: int) -> subprocess.CompletedProcess[str]:
        return self.run("apply", str(self.plan), "--trust", str(self.pub), "-q", *extra, **kill)

    def applied(self) -> bool:
        """The docker tree holds exactly what the plan leaves."""
        now = objects(self.storage)
        return now.keys() == self.before.keys() - set(self.moving) and all(
            now[k] == self.before[k] for k in now
        )

    def apply_id(self) -> str:
        r = self.run("history", "--root", self.storage.root, "--json")
        return str(json.loads(r.stdout)[-1]["apply_id"])


@pytest.fixture
def scene(s3server: S3Server, tmp_path: Path) -> Bucketed:
    return Bucketed(s3server, tmp_path)


def test_killed_applies_resume_then_roll_back_object_for_object(scene: Bucketed) -> None:
    """Killed at the first, a middle and the last copy, and at the first batch delete: the
    re-run (breaking the dead holder's lock, on request only) finishes the apply, the tree
    is as predicted, and rollback restores every object."""
    copies = len(scene.moving)
    assert copies > 20
    first = True
    for kill in ({"copy": 1}, {"copy": copies // 2}, {"copy": copies}, {"delete": 1}):
        r = scene.apply(**kill)
        assert r.returncode == -signal.SIGKILL, (kill, r.stderr)
        if first:  # the dead holder's lock is named, and broken only on request
            r = scene.apply()
            assert r.returncode == 5, r.stderr
            assert "--break-lock" in r.stderr
            first = False
        r = scene.apply("--break-lock")
        assert r.returncode == 0, (kill, r.stderr)
        assert scene.applied(), kill
        plan = workflow.load_plan(scene.plan)
        assert location.digest(scene.storage).digest == plan.fingerprint.after
        r = scene.run("rollback", scene.apply_id(), "--root", scene.storage.root, "-q")
        assert r.returncode == 0, r.stderr
        assert objects(scene.storage) == scene.before, kill


def test_a_killed_apply_rolls_back_without_resuming(scene: Bucketed) -> None:
    """Rollback of an apply killed half way: what was copied but not yet deleted is not
    copied back over itself; every object is as before."""
    r = scene.apply(copy=len(scene.moving) // 2)
    assert r.returncode == -signal.SIGKILL
    r = scene.run("rollback", scene.apply_id(), "--root", scene.storage.root, "-q", "--break-lock")
    assert r.returncode == 0, r.stderr
    assert objects(scene.storage) == scene.before
    assert not objects(scene.storage, "regplan-state/quarantine/")
    assert not objects(scene.storage, "regplan-state/lock")
