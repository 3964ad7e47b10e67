"""The peers' policies translated in policies/ remove exactly what each peer's
documented semantics remove, on one registry (tests/peers.py); the real registry's
pulls prove it in tests/integration/test_real_policies.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from regplan.decide.selection import Selection
from regplan.plans.plan import Plan, Verdict
from regplan.policy.load import read_file
from regplan.storage.fs.fsstorage import FsStorage
from tests import peers
from tests.helpers import NOW, drafted

POLICIES = Path(__file__).parents[1] / "policies"


def removed_by(plan: Plan, untagged: dict[str, str]) -> peers.Removed:
    """(repository, tag) of every image the plan removes; untagged ones by their age."""
    out: peers.Removed = set()
    for i in plan.images or ():
        if i.verdict is not Verdict.REMOVED or i.attached_to:
            continue
        out.add((i.repo, i.tag if i.tag is not None else untagged[str(i.digest)]))
    return out


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("peers") / "registry"
    return root, peers.build(root, NOW)


@pytest.mark.parametrize("peer", sorted(peers.ORACLES))
def test_a_translated_policy_removes_what_the_peer_removes(
    peer: str, registry: tuple[Path, dict[str, str]]
) -> None:
    root, untagged = registry
    policy = read_file(POLICIES / f"{peer}.yml")
    plan = drafted(storage=FsStorage.locate(root), selection=Selection(policy=policy), argv=[])
    expected = peers.ORACLES[peer]()
    assert expected, "the registry gives the peer something to remove"
    assert removed_by(plan, untagged) == expected
