"""The transaction's contract, the same tests on every backend (the backend a parameter):
apply then rollback is byte for byte (object for object) the tree before, folders and
files (a write's leftover) alike; purge empties
the quarantine; a held lock, a stale plan and a tampered plan move nothing; an apply
killed (SIGKILL) between two batches finishes by running it again. A new backend
passes these before anything above the storage seam may use it.

The kill comes from a wrapping store (every backend's ``move`` reports progress after
each batch), never from a patch of a backend's private names."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.demo.samples import BASE, Registry, build_demo, image
from regplan.storage import location
from regplan.storage.objects import objscan
from regplan.storage.s3.bucket import S3Storage
from tests import azserver, gcsserver, s3server
from tests.azserver import Azurite
from tests.gcsserver import GcsEmulator
from tests.helpers import docker_hashes, plant_leftovers, write_keys
from tests.s3server import S3Server, clean_env

KILL_BETWEEN_BATCHES = """
import os, signal, sys
from regplan.storage import location
from regplan.changes import transaction
transaction.BATCH = 4  # several batches even on the demo tree
opened = location.store

class Dying:
    '''The backend's store; its moves die as the second batch is reported done.'''
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def move(self, plan, apply_id, progress, *, resuming):
        reported = []
        def report(done, total):
            reported.append(done)
            if len(reported) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.move(plan, apply_id, report, resuming=resuming)

location.store = lambda storage: Dying(opened(storage))
from regplan.cli import cli
cli(sys.argv[1:], prog_name="regplan")
"""


@attrs.define
class Backend:
    """One registry's storage under test: where it is, and what it holds now."""

    root: str
    snapshot: Callable[[], dict[str, object]]
    quarantine: Callable[[], dict[str, object]]
    push: Callable[[], None]
    env: dict[str, str]


def _filesystem(base: Path, _: pytest.FixtureRequest) -> Backend:
    root = base / "registry"
    build_demo(root)
    plant_leftovers(root)

    def quarantine() -> dict[str, object]:
        q = root / "regplan-state" / "quarantine"
        return {p.relative_to(q).as_posix(): 1 for p in q.rglob("*") if p.is_file()}

    def push() -> None:
        Registry.create(root).push("team/new", image([BASE]), "v1")

    return Backend(
        root=str(root),
        snapshot=lambda: dict(docker_hashes(root)),
        quarantine=quarantine,
        push=push,
        env={},
    )


def _s3(base: Path, request: pytest.FixtureRequest) -> Backend:
    server: S3Server = request.getfixturevalue("s3server")
    storage: S3Storage = server.storage()
    env = {k: v for k, v in server.env().items() if k.startswith("AWS_")}
    return _bucketed(base, request, storage, s3server, env)


def _azure(base: Path, request: pytest.FixtureRequest) -> Backend:
    server: Azurite = request.getfixturevalue("azurite")
    env = {"AZURE_STORAGE_CONNECTION_STRING": server.connection_string}
    return _bucketed(base, request, server.storage(), azserver, env)


def _gcs(base: Path, request: pytest.FixtureRequest) -> Backend:
    server: GcsEmulator = request.getfixturevalue("gcs_emulator")
    env = {"STORAGE_EMULATOR_HOST": server.endpoint}
    return _bucketed(base, request, server.storage(), gcsserver, env)


def _bucketed(
    base: Path, request: pytest.FixtureRequest, storage: Any, server: Any, env: dict[str, str]
) -> Backend:
    """The demo tree in an object store; ``server`` the module of its test helpers
    (``upload_tree``, ``objects``: they read the store through the cloud's own SDK)."""
    build_demo(base / "fs")
    plant_leftovers(base / "fs")
    server.upload_tree(base / "fs", storage)
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    env[objscan.CACHE_ENV] = str(base / "cache")
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    def push() -> None:
        Registry.create(base / "more").push("team/new", image([BASE]), "v1")
        server.upload_tree(base / "more", storage)

    return Backend(
        root=storage.root,
        snapshot=lambda: dict(server.objects(storage)),
        quarantine=lambda: dict(server.objects(storage, "regplan-state/quarantine/")),
        push=push,
        env=env,
    )


BACKENDS = {"filesystem": _filesystem, "s3": _s3, "azure": _azure, "gcs": _gcs}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return BACKENDS[request.param](tmp_path, request)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_keys(tmp_path)


def run(*args: str, code: int = 0) -> str:
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r.output


@pytest.fixture
def plan(backend: Backend, keys: tuple[Path, Path], tmp_path: Path) -> Path:
    """Folders of every kind an --untagged --gc plan removes, and the files a write left
    (the one target that is a file): a second old, since a bucket's times are its own."""
    out = tmp_path / "p.json"
    time.sleep(2.1)  # a plan's clock has whole seconds
    run("plan", "--root", backend.root, "--key", str(keys[0]), "-o", str(out), "-q",
        "--untagged", "*", "--gc", "--leftovers-older-than", "1s")  # fmt: skip
    targets = json.loads(out.read_bytes())["targets"]
    assert sum(t["kind"] == "leftover" for t in targets) == 2
    return out


def apply(plan: Path, keys: tuple[Path, Path], *extra: str, code: int = 0) -> str:
    return run("apply", str(plan), "--trust", str(keys[1]), "--json", *extra, code=code)


def history(backend: Backend) -> list[tuple[str, str]]:
    out = json.loads(run("history", "--root", backend.root, "--json"))
    return [(h["apply_id"], h["state"]) for h in out]


def test_apply_then_rollback_is_the_tree_before(
    backend: Backend, plan: Path, keys: tuple[Path, Path]
) -> None:
    before = backend.snapshot()
    applied = json.loads(apply(plan, keys))
    assert applied["fingerprint_ok"] and backend.snapshot() != before
    assert backend.quarantine()
    run("rollback", applied["apply_id"], "--root", backend.root, "-q")
    assert backend.snapshot() == before
    assert not backend.quarantine()
    assert history(backend) == [(applied["apply_id"], "rolled-back")]
    apply(plan, keys, code=0)  # a rolled-back plan can be applied again


def test_purge_deletes_the_quarantine_and_says_so(
    backend: Backend, plan: Path, keys: tuple[Path, Path]
) -> None:
    applied = json.loads(apply(plan, keys))
    after = backend.snapshot()
    run("purge", applied["apply_id"], "--root", backend.root, "-q")
    assert not backend.quarantine()
    assert backend.snapshot() == after
    assert history(backend) == [(applied["apply_id"], "purged")]
    run("rollback", applied["apply_id"], "--root", backend.root, code=1)
    apply(plan, keys, code=4)  # already applied


def test_a_stale_or_tampered_plan_moves_nothing(
    backend: Backend, plan: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    raw = json.loads(plan.read_bytes())
    raw["targets"] = raw["targets"][:1]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(raw))
    before = backend.snapshot()
    apply(tampered, keys, code=3)
    backend.push()
    pushed = backend.snapshot()
    apply(plan, keys, code=4)
    assert backend.snapshot() == pushed != before
    assert history(backend) == []


def test_a_held_lock_moves_nothing(backend: Backend, plan: Path, keys: tuple[Path, Path]) -> None:
    before = backend.snapshot()
    store = location.store(location.locate(backend.root))
    with store.lock("apply elsewhere", False):
        out = apply(plan, keys, code=5)
    assert "apply elsewhere" in out
    assert backend.snapshot() == before
    assert history(backend) == []


def test_an_apply_killed_between_batches_finishes_by_running_it_again(
    backend: Backend, plan: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    before = backend.snapshot()
    killed = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_BATCHES, "apply", str(plan),
         "--trust", str(keys[1]), "-q"],
        capture_output=True, text=True, check=False, timeout=300,
        env={**clean_env(), **backend.env},
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [(apply_id, state)] = history(backend)
    assert state == "applying"
    assert backend.snapshot() != before  # part of it moved
    resumed = json.loads(apply(plan, keys, "--break-lock"))
    assert resumed["resumed"] and resumed["apply_id"] == apply_id
    assert resumed["fingerprint_ok"]
    run("rollback", apply_id, "--root", backend.root, "-q")
    assert backend.snapshot() == before
