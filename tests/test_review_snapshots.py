"""Every view of one realistic plan, as snapshots (#20): retention over every repository
with a keep pattern, untagged manifests, --gc and --prune, signed images, a multi-arch
index, a --protect file with a line that matches nothing. Update with
`pytest --snapshot-update`, read the diff, commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from regplan.decide.flags import Retention
from regplan.decide.protect import parse_protect
from regplan.decide.selection import ImageSpec, Selection
from regplan.plans.plan import Image, Kept, Plan, PlanProblem, ProtectRecord, Verdict
from regplan.plans.planfile import InMemory
from regplan.scan.inventory import ProblemCode
from regplan.views import render, report, reviewjson, ticket
from tests.helpers import make_plan

STABLE_ROOT = "/var/lib/registry"
PINNED = render.PlanFile(name="plans/cleanup.plan.json", sha256="ab" * 32)


@pytest.fixture
def realistic(demo_root: Path) -> Plan:
    """`--image '*' --keep-last 1 --keep 'v\\d+' --untagged '*' --gc --prune`, protecting
    what a cluster runs (one line names another registry's image)."""
    selection = Selection(
        images=(ImageSpec.parse("*"),),
        untagged=("*",),
        gc=True,
        prune=True,
        retention=Retention(keep_last=1, keep=r"v\d+"),
        protect=parse_protect("team/tool:1.0\nquay.io/other/x:1\n", "running.txt"),
    )
    return make_plan(demo_root, selection, stable_root=STABLE_ROOT)


def test_the_decision_is_what_an_operator_expects(realistic: Plan) -> None:
    """The snapshots below are of a right decision: each image's verdict and rule."""
    verdicts = {i.name: (i.verdict, i.reason) for i in realistic.images if i.tag}
    assert verdicts["team/app:latest"] == (Verdict.KEPT, "rank 1 of keep-last 1 by push time")
    assert verdicts["team/app:v1"] == (Verdict.KEPT, r"matches --keep v\d+")
    assert verdicts["team/tool:1.0"][0] is Verdict.KEPT
    assert verdicts["old/repo:2019"][0] is Verdict.REMOVED
    assert verdicts["old/repo:2019"][1].startswith("beyond keep-last 1: rank 2 by push time")


def test_text(realistic: Plan, snapshot: Any) -> None:
    text = render.text(realistic)
    assert len(text.splitlines()) < 500
    snapshot.assert_match(text, "realistic.txt")


def test_markdown(realistic: Plan, snapshot: Any) -> None:
    md = ticket.markdown(realistic, PINNED)
    assert len(md) <= ticket.MARKDOWN_LIMIT
    snapshot.assert_match(md, "realistic.md")


def test_html(realistic: Plan, snapshot: Any) -> None:
    snapshot.assert_match(report.html(realistic, PINNED), "realistic.html")


def test_json_review(realistic: Plan, snapshot: Any) -> None:
    text = "".join(reviewjson.review_json_chunks(InMemory(realistic), render.unchecked(realistic)))
    doc = json.loads(text)
    counted = doc["summary"]["images"]
    listed = {v: sum(len(r[v]) for r in doc["repositories"]) for v in counted}
    assert listed == counted  # every image is listed, and the counts add up
    snapshot.assert_match(text, "realistic.json")


def test_a_big_plan_stays_reviewable(realistic: Plan) -> None:
    """250,000 images in 500 repositories, 200 kept paths, 200 problems, 40 protect lines:
    the text summary within 500 lines, the ticket within 30,000 characters."""
    images = tuple(
        Image(
            repo=f"team{r % 7}/svc{r:03}",
            tag=f"v{t:03}",
            digest="sha256:" + f"{r:04}{t:04}".ljust(64, "0"),
            verdict=Verdict.REMOVED if t >= 3 else Verdict.KEPT,
            reason=f"beyond keep-last 3: rank {t + 1} by push time"
            if t >= 3
            else f"rank {t + 1} of keep-last 3 by push time",
            bytes=1000 * t,
        )
        for r in range(500)
        for t in range(500)
    )
    selection = realistic.request.selection
    protect = tuple(ProtectRecord(source=f"k.txt:{n}", ref=f"x/y:{n}") for n in range(40))
    big = attrs.evolve(
        realistic,
        images=images,
        kept=tuple(Kept(path=f"blobs/sha256/ab/{n:064x}", reason="shared") for n in range(200)),
        problems=tuple(
            PlanProblem(path=f"repositories/x{n}", code=ProblemCode.UNREADABLE, message="m")
            for n in range(200)
        ),
        request=attrs.evolve(realistic.request, selection=attrs.evolve(selection, protect=protect)),
    )
    text = render.text(big)
    assert len(text.splitlines()) < 500
    assert "Removes 248500 images and keeps 1500 in 500 repositories" in text
    assert "… and 485 more repositories" in text
    md = ticket.markdown(big, PINNED)
    assert len(md) <= ticket.MARKDOWN_LIMIT
    assert "## Images" in md and "## Runbook" in md
