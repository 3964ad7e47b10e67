"""The change ticket (``show --format markdown``) says exactly what the plan does (#33):
no two names render the same, every removed image is listed while the cap allows (and
the ticket says how many are not, and where they are), no cell repeats its heading or
shows stray backticks."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from regplan.plans.plan import Image, Plan, Verdict
from regplan.views import render, report, ticket
from tests.helpers import make_plan, selection

PINNED = render.PlanFile(name="p.json", sha256="ab" * 32)


@pytest.fixture
def base(demo_root: Path) -> Plan:
    return make_plan(demo_root, selection(("team/app:v1",)))


def with_images(plan: Plan, images: list[Image]) -> Plan:
    """``plan`` whose image records are ``images`` (sorted by repository, as a plan keeps
    them); its targets are untouched (the ticket's images come from the records)."""
    return attrs.evolve(plan, images=tuple(sorted(images, key=lambda i: (i.repo, i.tag or ""))))


def image(repo: str, tag: str, verdict: Verdict, n: int = 0) -> Image:
    reason = "requested" if verdict is Verdict.REMOVED else "not matched"
    return Image(repo=repo, tag=tag, digest=f"sha256:{n:064x}", verdict=verdict, reason=reason)


def rows(md: str, verdict: str) -> list[list[str]]:
    """The images table's rows of ``verdict``, as their cells."""
    cells = (line.strip("|").split(" | ") for line in md.splitlines() if line.startswith("| `"))
    return [c for c in cells if len(c) == 5 and c[2].strip() == verdict]


@pytest.mark.parametrize(
    ("removed", "kept"),
    [
        ("release-2026.01.15-" + "a" * 90 + "-amd64", "release-2026.01.15-" + "a" * 90 + "-arm64"),
        ("x" * 150 + "1" + "y" * 150, "x" * 150 + "2" + "y" * 150),  # differ in the middle
    ],
)
def test_two_long_names_never_render_the_same(base: Plan, removed: str, kept: str) -> None:
    """A name in a row with a verdict is never clipped at its end: short enough, it is
    whole; longer, its middle is clipped with a marker that tells it from every other."""
    plan = with_images(
        base,
        [
            image("team/long", removed, Verdict.REMOVED, 1),
            image("team/long", kept, Verdict.KEPT, 2),
        ],
    )
    md = ticket.markdown(plan, PINNED)
    [gone] = rows(md, "removed")
    [stays] = rows(md, "kept")
    assert gone[1] != stays[1]
    if len(removed) <= render.NAME:
        assert gone[1] == f"`{removed}`" and stays[1] == f"`{kept}`"
    else:
        assert gone[1].startswith("`" + removed[:40]) and gone[1].endswith(removed[-40:] + "`")


def test_every_removed_image_is_listed(base: Plan) -> None:
    """Nine removed and three kept in one repository: all nine are rows of their own
    (no ``… 3 more | removed``)."""
    images = [image("team/web", f"old-{n}", Verdict.REMOVED, n) for n in range(9)]
    images += [image("team/web", f"v{n}", Verdict.KEPT, 100 + n) for n in range(3)]
    md = ticket.markdown(with_images(base, images), PINNED)
    assert sorted(r[1] for r in rows(md, "removed")) == [f"`old-{n}`" for n in range(9)]
    assert "more | removed" not in md and "not listed" not in md


def test_the_cap_is_spent_on_removed_images_first_and_what_is_left_out_is_counted(
    base: Plan,
) -> None:
    """2,000 removed and 500 kept cannot fit 30,000 characters: the ticket lists
    removed images before any kept one, and says how many of each it does not list
    and how to see them all."""
    images = [image(f"team/svc{n % 4}", f"build-{n:05d}", Verdict.REMOVED, n) for n in range(2000)]
    images += [image(f"team/svc{n % 4}", f"v{n}", Verdict.KEPT, 5000 + n) for n in range(500)]
    md = ticket.markdown(with_images(base, images), PINNED)
    assert len(md) <= ticket.MARKDOWN_LIMIT
    listed = len(rows(md, "removed"))
    assert listed > 50
    assert not rows(md, "kept")
    note = re.search(r"\*\*(\d+) of 2000 removed images and 500 of 500 kept are not listed", md)
    assert note is not None and int(note.group(1)) == 2000 - listed
    assert "`regplan show p.json --format html`" in md and "`--json`" in md


def test_facts_do_not_repeat_their_heading_and_empty_cells_are_empty(base: Plan) -> None:
    """``| Signatures | 1, NOT VERIFIED …`` (not ``Signatures | Signatures (…``); a cell
    with nothing in it is empty, not a pair of backticks."""
    md = ticket.markdown(base, PINNED)
    assert "| Signatures | Signatures" not in md
    assert "| Signatures | 1, NOT VERIFIED: " in md
    assert not re.search(r"\| ` +` \|", md), md
    assert ticket.code("") == ""


def test_one_directory_is_singular(base: Plan) -> None:
    """``1 directory``, never ``1 directories``, in the ticket and the page."""
    one = attrs.evolve(base, summary=attrs.evolve(base.summary, targets=1))
    md = ticket.markdown(one, PINNED)
    assert "| Removes | 1 directory, " in md
    assert "The full list of the 1 directory is in the attached plan file" in md
    assert "<tr><th>Removes</th><td>1 directory, " in report.html(one, PINNED)


def test_beyond_what_the_page_lists_the_ticket_names_the_json(base: Plan) -> None:
    """12,000 removed images: more than the HTML page lists, so the ticket sends the
    reader to ``show --json`` alone, with the exact count it leaves out."""
    images = [image(f"team/s{n % 3}", f"b{n:05d}", Verdict.REMOVED, n) for n in range(12_000)]
    md = ticket.markdown(with_images(base, images), PINNED)
    listed = len(rows(md, "removed"))
    assert f"**{12_000 - listed} of 12000 removed images and 0 of 0 kept" in md
    assert "`regplan show p.json --json` lists every one (the page, 10,000)" in md
