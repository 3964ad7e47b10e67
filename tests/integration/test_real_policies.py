"""The peers' policies translated in policies/ (#24), on the real registry: each plan
removes what the peer's documented semantics remove (tests/peers.py), and after the
removal every kept image pulls and no removed one does."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from regplan.decide.selection import Selection
from regplan.policy.load import read_file
from regplan.storage.fs.fsstorage import FsStorage
from tests import peers
from tests.helpers import NOW, drafted
from tests.integration.realreg import RealRegistry, Serve, all_refs, require_binaries
from tests.integration.test_real_registry import prove
from tests.test_peer_policies import POLICIES, removed_by


@pytest.fixture(scope="module")
def peers_pushed(
    tmp_path_factory: pytest.TempPathFactory, registry_version: str
) -> Iterator[tuple[Path, dict[str, str]]]:
    """Every push of tests/peers.py through skopeo, then dated as the peers see it."""
    require_binaries(registry_version)
    root = tmp_path_factory.mktemp("peers") / "root"
    reg = RealRegistry(root, tmp_path_factory.mktemp("peers-work"), version=registry_version)
    reg.start()
    try:
        for repo, tag, item, _ in peers.pushes(NOW):
            reg.push(repo, tag, item)
    finally:
        reg.stop()
    yield root, peers.date(root, NOW)


@pytest.mark.parametrize("peer", sorted(peers.ORACLES))
def test_a_translated_policy_on_the_real_registry(
    peer: str, peers_pushed: tuple[Path, dict[str, str]], serve: Serve, tmp_path: Path
) -> None:
    pushed, untagged = peers_pushed
    root = tmp_path / "root"
    shutil.copytree(pushed, root, symlinks=True)
    reg = serve(root)
    before = all_refs(root)
    policy = read_file(POLICIES / f"{peer}.yml")
    plan = drafted(storage=FsStorage.locate(root), selection=Selection(policy=policy), argv=[])
    expected = peers.ORACLES[peer]()
    assert removed_by(plan, untagged) == expected
    _, gone = prove(reg, before, plan, root)
    by_age = {age: digest for digest, age in untagged.items()}
    named = {f"{r}:{t}" if not t.startswith("@") else f"{r}@{by_age[t]}" for r, t in expected}
    assert named <= gone
