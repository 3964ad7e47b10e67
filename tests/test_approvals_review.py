"""``verify --approvals`` and ``show --format markdown --approvals`` (cli/review.py):
verify holds the plan to the rule (exit 3, the same line as apply) and names who
planned and approved by principal; the ticket's runbook asks for the approvers."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from regplan.cli import cli
from tests.test_approvals_cli import approve, team

__all__ = ["team"]  # the fixture, shared


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_verify_holds_the_plan_to_the_rule(team: tuple[Path, Path, Path], demo_root: Path) -> None:
    plan, trust, rule = team
    approve(plan, "bob", trust)
    args: list[str | Path] = [
        "verify",
        plan,
        "--trust",
        trust,
        "--approvals",
        rule,
        "--root",
        demo_root,
    ]
    short = run(*args)
    assert short.exit_code == 3
    assert "missing: 1 more approval from [carol@review, *@security]" in short.output
    approve(plan, "carol", trust)
    done = run(*args)
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == (
        f"It meets the approval rule {rule}: planned by alice@ops, approved by bob@review, "
        "carol@review."
    )
    found = json.loads(run(*args, "--json").output)["approval_rule"]
    assert found == {
        "file": str(rule),
        "required_approvals": 2,
        "planner": "alice@ops",
        "approvers": ["bob@review", "carol@review"],
    }


def test_the_ticket_asks_for_the_rule_s_approvers(team: tuple[Path, Path, Path]) -> None:
    plan, trust, rule = team
    approve(plan, "bob", trust)
    md = run("show", plan, "--format", "markdown", "--trust", trust, "--approvals", rule).output
    assert (
        "Approved so far (valid signatures by trusted keys, as checked above): `bob@review`" in md
    )
    assert f"--approvals {rule} --root" in md
