from __future__ import annotations

from pathlib import Path

import pytest

from regplan.demo import DemoImages, build_demo


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    build_demo(root)
    return root


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, DemoImages]:
    root = tmp_path / "registry"
    return root, build_demo(root)
