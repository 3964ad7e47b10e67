from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from regplan.cli import cli
from regplan.demo.samples import DemoImages, build_demo

pytest_plugins = ["tests.s3server", "tests.azserver", "tests.gcsserver"]

# No per-example deadline and no too-slow check: both are timing assertions,
# and on a loaded 2-core CI machine a pause would fail a correct test.
settings.register_profile("regplan", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("regplan")


@pytest.fixture(autouse=True)
def registry_stopped() -> Iterator[None]:
    """Apply and rollback move nothing until something says the registry cannot write
    (README: Safety procedure). Tests of other behaviour say so as automation does,
    with REGPLAN_REGISTRY_STOPPED=1 (inherited by the commands they run); the tests of
    that rule remove it (tests/test_write_guard.py), and tests that run the real
    registry give --registry-url, which is probed whatever this says. (A patch of its
    own: a test's ``monkeypatch.undo()`` leaves it set.)"""
    patch = pytest.MonkeyPatch()
    patch.setenv("REGPLAN_REGISTRY_STOPPED", "1")
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test's object-store plans keep their cache (scan/edges.py) in a folder of
    the test's own, not in the user's ~/.cache (nor one shared by every test of the
    run, which every save rewrote). A filesystem plan still keeps none."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    build_demo(root)
    return root


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, DemoImages]:
    root = tmp_path / "registry"
    return root, build_demo(root)


@pytest.fixture
def alice_plan(demo_root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A plan by alice@ops (``p.json``, ``--image team/app:v1``), her public key, and
    bob@review's private key (both made by ``regplan keygen``)."""
    runner = CliRunner()
    for name, comment in (("alice", "alice@ops"), ("bob", "bob@review")):
        made = runner.invoke(cli, ["keygen", str(tmp_path / name), "--comment", comment])
        assert made.exit_code == 0, made.output
    plan = tmp_path / "p.json"
    args = ["plan", "--root", str(demo_root), "--key", str(tmp_path / "alice")]
    made = runner.invoke(cli, [*args, "-o", str(plan), "--image", "team/app:v1"])
    assert made.exit_code == 0, made.output
    return plan, tmp_path / "alice.pub", tmp_path / "bob"
