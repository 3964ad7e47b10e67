"""Snapshots of the plan file and its renderings (update: pytest --snapshot-update)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from regplan.decide.protect import parse_protect
from regplan.plans import codec
from regplan.plans.plan import Kept, Plan, PlanProblem, Target, TargetKind, summarize
from regplan.scan.inventory import ProblemCode
from regplan.views import render, ticket
from tests.helpers import make_plan, selection

REPO = Path(__file__).resolve().parent.parent
STABLE_ROOT = "/var/lib/registry"


@pytest.fixture
def example(demo_root: Path) -> Plan:
    """The plan ``regplan demo`` makes, with a stable root path."""
    return make_plan(
        demo_root, selection(("team/app:v1",), ("team/*",), prune=True), stable_root=STABLE_ROOT
    )


def test_example_plan_in_plans_folder_is_current(example: Plan, snapshot: Any) -> None:
    """plans/example.plan.json is what the demo registry gives today."""
    snapshot.snapshot_dir = REPO / "plans"
    snapshot.assert_match(codec.dumps(example).decode(), "example.plan.json")


def test_text(example: Plan, snapshot: Any) -> None:
    snapshot.assert_match(render.text(example), "plan.txt")


def test_text_with_every_target(example: Plan, snapshot: Any) -> None:
    snapshot.assert_match(render.text(example, targets=True), "plan-targets.txt")


def test_markdown(example: Plan, snapshot: Any) -> None:
    snapshot.assert_match(ticket.markdown(example), "plan.md")


def test_whole_repository_plan_text(demo_root: Path, snapshot: Any) -> None:
    plan = make_plan(demo_root, selection(("old/repo", "team/app")), stable_root=STABLE_ROOT)
    snapshot.assert_match(render.text(plan), "whole-repos.txt")


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**3 + 1, "5.0 GiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert render.human_bytes(n) == text


@pytest.fixture
def signed_plan(demo_root: Path) -> Plan:
    """team/signed:v1 removed (its signature and attestation follow it); v2 protected,
    and a protect line that matches nothing."""
    sel = attrs.evolve(
        selection(("team/signed:v1",)),
        protect=parse_protect("team/signed:v2\nteam/gone:v0\n", "running.txt"),
    )
    return make_plan(demo_root, sel, stable_root=STABLE_ROOT)


def test_signed_image_text(signed_plan: Plan, snapshot: Any) -> None:
    """Attached tags are listed under the image they follow: 'v1 (+ attestation, signature)'."""
    text = render.text(signed_plan)
    assert (
        "  - v1 (+ attestation, signature)    1.3 KiB  requested: --image team/signed:v1\n" in text
    )
    snapshot.assert_match(text, "signed.txt")


def test_signed_image_markdown(signed_plan: Plan, snapshot: Any) -> None:
    markdown = ticket.markdown(signed_plan)
    assert (
        "| `team/signed` | `v1 (+ attestation, signature)` | removed | 1.3 KiB | "
        "`requested: --image team/signed:v1` |\n"
    ) in markdown
    assert "| `running.txt:2` | `team/gone:v0` | **matches nothing** |" in markdown
    snapshot.assert_match(markdown, "signed.md")


def test_markdown_fits_a_ticket_whatever_the_plan(example: Plan) -> None:
    """250,000 targets, 50,000 kept, 10,000 problems: still at most 30,000 characters,
    with the totals, the capped tables and the commands."""
    targets = [
        Target(
            path=f"repositories/team{r % 7}/svc{r}/_manifests/tags/v{t}",
            kind=TargetKind.TAG,
            reason=f"beyond keep-last 3: rank {t} by push time",
            bytes=1000 + t,
        )
        for r in range(500)
        for t in range(500)
    ]
    kept = [
        Kept(path=f"blobs/sha256/{i:064x}"[:80], reason="shared: still referenced")
        for i in range(50_000)
    ]
    problems = [
        PlanProblem(
            path=f"repositories/x{i}/_layers", code=ProblemCode.UNREADABLE, message="cannot list"
        )
        for i in range(10_000)
    ]
    big = attrs.evolve(
        example,
        targets=tuple(targets),
        kept=tuple(kept),
        problems=tuple(problems),
        summary=summarize(tuple(targets)),
    )
    summary = render.text(big)
    assert summary.count("\n") < 300
    assert "  … and 470 more repositories\n" in summary
    text = ticket.markdown(big, render.PlanFile(name="big.plan.json", sha256="ab" * 32))
    assert len(text) <= ticket.MARKDOWN_LIMIT
    assert "| Removes | 250000 directories, " in text
    assert "SHA-256 `" + "ab" * 32 + "`" in text
    assert "## Images" in text and "more repositories |" in text
    assert "regplan apply big.plan.json --trust TRUST --require-signatures 2" in text
    assert "regplan rollback APPLY_ID --root" in text and "regplan check --registry-url" in text
    assert text.endswith("(`regplan show big.plan.json --targets`).\n")
