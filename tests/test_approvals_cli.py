"""``apply --approvals FILE`` (and ``REGPLAN_APPROVALS``) end to end with regplan's own
keys (``regplan keygen``): a plan short of the rule is exit 3 naming who signed and who
is missing, and nothing moves; one that meets it applies, and ``history`` says who
planned, approved and ran each step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan import workflow
from regplan.cli import cli
from regplan.errors import SignatureError
from regplan.plans import signing
from regplan.plans.rule import Signers
from regplan.policy import approvals_file
from tests.helpers import content_hashes

RULE = """\
version: 1
required_approvals: 2
planners: [alice@ops]
approvers: [bob@review, carol@review, "*@security"]
"""


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture
def team(demo_root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """alice@ops's plan (``--image team/app:v1``), the team's trust file (every key, one
    line each) and the rule file."""
    for name in ("alice@ops", "bob@review", "carol@review", "eve@ops", "dan@security"):
        made = run("keygen", tmp_path / name.partition("@")[0], "--comment", name)
        assert made.exit_code == 0, made.output
    trust = tmp_path / "team.pub"
    trust.write_text("".join(p.read_text() for p in sorted(tmp_path.glob("*.pub"))))
    plan = tmp_path / "p.json"
    made = run("plan", "--root", demo_root, "--key", tmp_path / "alice", "-o", plan,
               "--image", "team/app:v1")  # fmt: skip
    assert made.exit_code == 0, made.output
    rule = tmp_path / "regplan-approvals.yml"
    rule.write_text(RULE)
    return plan, trust, rule


def approve(plan: Path, who: str, trust: Path) -> None:
    done = run("approve", plan, "--key", plan.parent / who, "--trust", trust)
    assert done.exit_code == 0, done.output


def test_one_approval_is_exit_3_naming_who_is_missing(
    team: tuple[Path, Path, Path], demo_root: Path
) -> None:
    plan, trust, rule = team
    approve(plan, "bob", trust)
    approve(plan, "eve", trust)  # trusted, but not an approver
    before = content_hashes(demo_root)
    done = run("apply", plan, "--trust", trust, "--approvals", rule, "--root", demo_root)
    assert done.exit_code == 3
    plan_id = json.loads(plan.read_text())["plan_id"]
    assert done.output == (
        f"Error: plan {plan_id} does not meet the approval rule ({rule}); planned by "
        "alice@ops; approved by bob@review (1 of 2); not counted: eve@ops (not among the "
        "approvers); missing: 1 more approval from [carol@review, *@security]\n"
    )
    assert content_hashes(demo_root) == before
    assert "No applies recorded." in run("history", "--root", demo_root).output


def test_two_approvals_apply_and_history_says_who(
    team: tuple[Path, Path, Path], demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, trust, rule = team
    approve(plan, "bob", trust)
    approve(plan, "dan", trust)  # *@security
    monkeypatch.setenv("LOGNAME", "operator-olga")
    env = {"REGPLAN_APPROVALS": str(rule)}
    done = run("apply", plan, "--trust", trust, "--root", demo_root, "--json", env=env)
    assert done.exit_code == 0, done.output
    apply_id = json.loads(done.output)["apply_id"]
    monkeypatch.setenv("LOGNAME", "operator-oscar")
    assert run("rollback", apply_id, "--root", demo_root, "-q").exit_code == 0
    [record] = json.loads(run("history", "--root", demo_root, "--json").output)
    assert record["planner"] == "alice@ops"
    assert record["approvers"] == ["bob@review", "dan@security"]
    steps = [(o["action"], o["user"]) for o in record["operators"]]
    assert steps == [("apply", "operator-olga"), ("rollback", "operator-oscar")]
    assert all(o["host"] and o["at"].endswith("Z") for o in record["operators"])
    text = run("history", "--root", demo_root).output
    assert f"{apply_id}: planned by alice@ops; approved by bob@review, dan@security" in text
    assert f"{apply_id}: apply by operator-olga on " in text
    assert "; rollback by operator-oscar on " in text


def test_the_planners_own_second_key_does_not_count(
    team: tuple[Path, Path, Path], demo_root: Path, tmp_path: Path
) -> None:
    """alice@ops approving her own plan with another key of hers: not an approval."""
    plan, trust, rule = team
    run("keygen", tmp_path / "alice2", "--comment", "alice@ops")
    trust.write_text(trust.read_text() + (tmp_path / "alice2.pub").read_text())
    rule.write_text(RULE.replace("[bob@review,", "[alice@ops, bob@review,"))
    approve(plan, "alice2", trust)
    approve(plan, "bob", trust)
    done = run("apply", plan, "--trust", trust, "--approvals", rule, "--root", demo_root)
    assert done.exit_code == 3
    assert "not counted: alice@ops (the planner)" in done.output
    assert "missing: 1 more approval from [carol@review, *@security]" in done.output


def test_a_planner_not_in_the_rule_is_refused(
    team: tuple[Path, Path, Path], demo_root: Path, tmp_path: Path
) -> None:
    _, trust, rule = team
    other = tmp_path / "eve-plan.json"
    run("plan", "--root", demo_root, "--key", tmp_path / "eve", "-o", other,
        "--image", "team/app:v1")  # fmt: skip
    for who in ("bob", "carol"):
        approve(other, who, trust)
    done = run("apply", other, "--trust", trust, "--approvals", rule, "--root", demo_root)
    assert done.exit_code == 3
    assert "planned by eve@ops, not among the planners [alice@ops]" in done.output


def test_without_a_rule_todays_flags_apply(team: tuple[Path, Path, Path], demo_root: Path) -> None:
    """No --approvals and no REGPLAN_APPROVALS: --require-signatures as before; history
    still names the signers, and the purge's operator."""
    plan, trust, _ = team
    approve(plan, "eve", trust)
    done = run("apply", plan, "--trust", trust, "--root", demo_root, "--require-signatures", "3")
    assert done.exit_code == 3
    assert "2 valid signature(s) from trusted keys, 3 required" in done.output
    done = run("apply", plan, "--trust", trust, "--root", demo_root, "--json")
    assert done.exit_code == 0, done.output
    purged = run("purge", json.loads(done.output)["apply_id"], "--root", demo_root)
    assert purged.exit_code == 0, purged.output
    [record] = json.loads(run("history", "--root", demo_root, "--json").output)
    assert (record["planner"], record["approvers"]) == ("alice@ops", ["eve@ops"])
    assert [o["action"] for o in record["operators"]] == ["apply", "purge"]


def test_a_bad_rule_file_is_one_line_before_anything_is_read(
    team: tuple[Path, Path, Path], demo_root: Path
) -> None:
    plan, trust, rule = team
    rule.write_text(RULE.replace("required_approvals: 2", "required_approvals: 2\nplaners: []"))
    done = run("apply", plan, "--trust", trust, "--approvals", rule, "--root", demo_root)
    assert done.exit_code == 1
    assert done.output == (
        f"Error: {rule}:3:1: the rule: unknown key 'planers' (expected one of: approvers, "
        "planner_counts_as_approver, planners, required_approvals, version)\n"
    )


def test_verify_holds_the_plan_to_the_rule(team: tuple[Path, Path, Path], demo_root: Path) -> None:
    """``workflow.load_verified(rule=...)`` (verify's core): exit 3 short of the rule, and
    the planner and approvers by principal once it holds."""
    plan, trust, rule_file = team
    rule = approvals_file.read_file(rule_file)
    trusted = signing.trusted_from([trust])
    approve(plan, "bob", trust)
    with pytest.raises(SignatureError, match=r"missing: 1 more approval from \[carol@review"):
        workflow.load_verified(plan, trusted=trusted, root=demo_root, rule=rule)
    approve(plan, "carol", trust)
    v = workflow.load_verified(plan, trusted=trusted, root=demo_root, rule=rule)
    assert v.principals == Signers(planner="alice@ops", approvers=("bob@review", "carol@review"))
    assert workflow.load_verified(plan, trusted=trusted, root=demo_root).principals is None
