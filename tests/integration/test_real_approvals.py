"""A two-person rule from a file, enforced on the real registry's apply (#35.3, #35.4):
keys made by ``ssh-keygen``, trust from an ``allowed_signers`` file, the rule in
``regplan-approvals.yml``. With one approval the apply is exit 3 naming who is missing
and nothing changes; a second approval, made by stock ``ssh-keygen -Y sign`` over
``regplan digest``, and it applies under the read-only registry; ``history --json``
says who planned, approved and applied, by principal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from regplan.demo.samples import DemoImages
from tests.helpers import docker_hashes
from tests.integration.realreg import RealRegistry, Serve, copy_of

READ_ONLY = "  cache: {blobdescriptor: inmemory}\n  maintenance: {readonly: {enabled: true}}\n"
RULE = """\
version: 1
required_approvals: 2
planners: [alice@ops]
approvers: [bob@review, carol@review, dave@review]
"""


def regplan(*args: str | Path, code: int = 0) -> str:
    """Run regplan as an operator does; its stdout and stderr once its exit code is ``code``."""
    env = {k: v for k, v in os.environ.items() if k != "REGPLAN_REGISTRY_STOPPED"}
    env["LOGNAME"] = "olga"
    done = subprocess.run(
        [sys.executable, "-m", "regplan", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    return done.stdout + done.stderr


def ssh_key(path: Path, principal: str) -> str:
    """A new Ed25519 key from ssh-keygen; its allowed_signers line."""
    made = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(path)],
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    kind, blob = Path(f"{path}.pub").read_text().split()[:2]
    return f'{principal} namespaces="regplan-plan" {kind} {blob}\n'


def test_a_two_person_rule_from_a_file_on_the_real_registry(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    if shutil.which("ssh-keygen") is None:
        if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
            pytest.fail("ssh-keygen is missing (apt-get install openssh-client)")
        pytest.skip("ssh-keygen is missing (apt-get install openssh-client)")
    root = copy_of(pushed, tmp_path)
    reg: RealRegistry = serve(root, storage=READ_ONLY)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(
        "".join(ssh_key(tmp_path / n, f"{n}@{team}") for n, team in
                (("alice", "ops"), ("bob", "review"), ("carol", "review")))
    )  # fmt: skip
    rule = tmp_path / "regplan-approvals.yml"
    rule.write_text(RULE)
    plan = tmp_path / "cleanup.plan.json"
    regplan("plan", "--root", root, "--key", tmp_path / "alice", "-o", plan,
            "--image", "team/app:v1", "--detailed-exitcode", code=2)  # fmt: skip
    regplan("approve", plan, "--key", tmp_path / "bob", "--trust", allowed)
    apply: list[str | Path] = [
        "apply",
        plan,
        "--trust",
        allowed,
        "--approvals",
        rule,
        "--registry-url",
        reg.url,
    ]

    before = docker_hashes(root)
    refused = regplan(*apply, code=3)
    plan_id = json.loads(plan.read_text())["plan_id"]
    assert refused == (
        f"Error: plan {plan_id} does not meet the approval rule ({rule}); planned by "
        "alice@ops; approved by bob@review (1 of 2); missing: 1 more approval from "
        "[carol@review, dave@review]\n"
    )
    assert docker_hashes(root) == before
    assert not (root / "regplan-state" / "applies").exists()
    assert reg.pull("team/app:v1")

    # carol approves with stock OpenSSH over the bytes regplan digest prints
    digest = regplan("digest", plan)
    signed = subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-f", str(tmp_path / "carol"), "-n", "regplan-plan"],
        input=digest.encode(),
        capture_output=True,
        check=False,
    )
    assert signed.returncode == 0, signed.stderr
    Path(f"{plan}.approval-carol.sig").write_bytes(signed.stdout)

    applied = json.loads(regplan(*apply, "--json"))
    reg.restart()
    assert not reg.pull("team/app:v1")
    assert reg.pull("team/app:v2")
    [record] = json.loads(regplan("history", "--root", root, "--json"))
    assert record["apply_id"] == applied["apply_id"]
    assert (record["planner"], record["approvers"]) == ("alice@ops", ["bob@review", "carol@review"])
    [step] = record["operators"]
    assert (step["action"], step["user"]) == ("apply", "olga")
    text = regplan("history", "--root", root)
    assert "planned by alice@ops; approved by bob@review, carol@review" in text
