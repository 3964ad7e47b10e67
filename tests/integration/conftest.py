from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regplan.demo.samples import DemoImages, demo_pushes
from tests.integration.realreg import VERSIONS, RealRegistry, require_binaries


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"registry-{v}" for v in VERSIONS])
def registry_version(request: pytest.FixtureRequest) -> str:
    """The registry version a test runs against: every real-registry test runs on each."""
    version: str = request.param
    return version


@pytest.fixture
def serve(tmp_path: Path, registry_version: str) -> Iterator[Callable[..., RealRegistry]]:
    """Start a real registry over a rootdirectory; all are stopped at the end."""
    require_binaries(registry_version)
    started: list[RealRegistry] = []

    def start(
        root: Path, *, storage: str = "", extra: str = "", tls: tuple[Path, Path] | None = None
    ) -> RealRegistry:
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        reg = RealRegistry(
            root, work, version=registry_version, storage=storage, extra=extra, tls=tls
        )
        reg.start()
        started.append(reg)
        return reg

    yield start
    for reg in started:
        reg.stop()


@pytest.fixture(scope="session")
def pushed(
    tmp_path_factory: pytest.TempPathFactory, registry_version: str
) -> Iterator[tuple[Path, DemoImages]]:
    """The demo's images pushed through skopeo into a real registry, once per version."""
    require_binaries(registry_version)
    root = tmp_path_factory.mktemp("pushed") / "root"
    work = tmp_path_factory.mktemp("pushed-work")
    reg = RealRegistry(root, work, version=registry_version)
    reg.start()
    images = demo_pushes()
    try:
        for repo, tag, item in images.pushes:
            reg.push(repo, tag, item)
    finally:
        reg.stop()
    yield root, images
