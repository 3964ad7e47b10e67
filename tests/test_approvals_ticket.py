"""The change ticket's runbook with an approval rule (views/ticket.py): it asks for the
approvers by principal, says who has approved and how many more are needed, holds the
apply to the rule file (``--approvals``), and every name in it stays inert."""

from __future__ import annotations

from pathlib import Path

import attrs
from markdown_it import MarkdownIt

from regplan.plans.plan import Plan
from regplan.plans.rule import Rule
from regplan.plans.signing import Checked, State
from regplan.views import render, ticket
from tests.helpers import make_plan, selection
from tests.test_views_inert import HOSTILE, tags_of

RULE = Rule(
    required_approvals=2,
    planners=("alice@ops",),
    approvers=("bob@review", "carol@review", "*@security"),
    file="ops/regplan-approvals.yml",
)
PINNED = render.PlanFile(name="cleanup.plan.json", sha256="ab" * 32)


def checked(name: str, role: str = "approver") -> Checked:
    return Checked(
        keyid=f"ed25519:{name}",
        role=role,
        signer=name,
        signed_at="2026-01-01T00:00:00Z",
        source="plan",
        state=State.VALID,
        name=name,
    )


def plan(demo_root: Path) -> Plan:
    return make_plan(demo_root, selection(("team/app:v1",)))


def test_the_runbook_asks_for_the_approvers_and_applies_with_the_rule(demo_root: Path) -> None:
    signed = [checked("alice@ops", "planner"), checked("bob@review")]
    md = ticket.markdown(plan(demo_root), PINNED, signed, rule=RULE)
    runbook = md.split("## Runbook", 1)[1]
    assert (
        "Approval rule `ops/regplan-approvals.yml` (`apply --approvals`): the plan is made by "
        "one of `alice@ops` and needs **2** approval(s) from `bob@review`, `carol@review`, "
        "`*@security` (the planner's own does not count). Approved so far (valid signatures "
        "by trusted keys, as checked above): `bob@review`. **1 more needed**, from "
        "`carol@review`, `*@security`."
    ) in runbook
    assert "--approvals ops/regplan-approvals.yml --root" in runbook
    assert "--require-signatures" not in runbook


def test_enough_approvals_and_a_planner_out_of_the_rule(demo_root: Path) -> None:
    enough = [checked("alice@ops", "planner"), checked("bob@review"), checked("x@security")]
    assert "Enough approvals so far." in ticket.markdown(plan(demo_root), PINNED, enough, RULE)
    other = [checked("eve@ops", "planner"), checked("bob@review"), checked("carol@review")]
    md = ticket.markdown(plan(demo_root), PINNED, other, RULE)
    assert "**Refused whatever the approvals: `planned by eve@ops, not among the planners" in md


def test_without_a_rule_the_runbook_is_as_before(demo_root: Path) -> None:
    md = ticket.markdown(plan(demo_root), PINNED)
    assert "--require-signatures 2" in md and "Approval rule" not in md


def test_a_hostile_rule_renders_no_link_image_or_html(demo_root: Path) -> None:
    """Principals and the rule's file name come from files a reviewer may not have read."""
    rule = Rule(
        required_approvals=3,
        planners=(HOSTILE,),
        approvers=(HOSTILE, f"b{HOSTILE}"),
        file=f"{HOSTILE}.yml",
    )
    signed = [checked(HOSTILE, "planner"), checked(f"b{HOSTILE}")]
    hostile = attrs.evolve(plan(demo_root), root=f"/srv/{HOSTILE}")
    md = ticket.markdown(hostile, PINNED, signed, rule)
    html = MarkdownIt("gfm-like", {"linkify": True}).render(md)
    assert tags_of(html) <= {"h1", "h2", "p", "table", "thead", "tbody", "tr", "th", "td",
                             "code", "pre", "strong"}  # fmt: skip
    assert "\x1b" not in md and "\u202e" not in md
    fenced = md.split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert all(line.isprintable() for line in fenced.splitlines())
