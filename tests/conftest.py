from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from regplan.demo import DemoImages, build_demo

pytest_plugins = ["tests.s3server"]

# No per-example deadline and no too-slow check: both are timing assertions,
# and on a loaded 2-core CI machine a pause would fail a correct test.
settings.register_profile("regplan", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("regplan")


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    build_demo(root)
    return root


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, DemoImages]:
    root = tmp_path / "registry"
    return root, build_demo(root)
