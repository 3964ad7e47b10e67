"""Every string from the storage, the request or the plan file is inert in every view
(#21.13, #21.14): a review is read before anything is verified, so a hostile name or
an edited plan must not drive the terminal, render as a link, an image or HTML in the
ticket, or become markup in the page."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import attrs
import pytest
from markdown_it import MarkdownIt

from regplan.plans.plan import Image, Kept, Plan, PlanProblem, ProtectRecord, Verdict
from regplan.plans.planfile import InMemory
from regplan.scan.inventory import ProblemCode
from regplan.views import render, report, reviewjson, ticket, why
from tests.helpers import make_plan, selection

HOSTILE = (
    "x`](https://evil.example/ok)[APPROVED](https://evil.example) <img src=x onerror=alert(1)>"
    " www.evil.example \x1b[2J\x1b[1A\x1b[K\x9b31m \u202eexe.txt | **bold** <script>x</script>"
)


@pytest.fixture
def hostile(demo_root: Path) -> Plan:
    """An honest plan whose lists were edited to carry HOSTILE everywhere a name goes."""
    plan = make_plan(demo_root, selection(("team/app:v1",)))
    request = attrs.evolve(
        plan.request,
        selection=attrs.evolve(
            plan.request.selection,
            protect=(ProtectRecord(source=f"k.txt:1 {HOSTILE}", ref=HOSTILE, matches=(HOSTILE,)),),
        ),
    )
    return attrs.evolve(
        plan,
        root=f"/var/lib/{HOSTILE}",
        request=request,
        kept=(Kept(path=f"blobs/{HOSTILE}", reason=HOSTILE, refs=(HOSTILE,)),),
        problems=(PlanProblem(path=HOSTILE, code=ProblemCode.UNREADABLE, message=HOSTILE),),
        images=(
            *plan.images,
            Image(
                repo=f"team/{HOSTILE}",
                tag=HOSTILE,
                digest=None,
                verdict=Verdict.REMOVED,
                reason=HOSTILE,
            ),
            Image(
                repo=f"team/{HOSTILE}", tag="b", digest=None, verdict=Verdict.KEPT, reason=HOSTILE
            ),
        ),
        signatures=tuple(attrs.evolve(s, signer=HOSTILE) for s in plan.signatures),
    )


def test_the_terminal_gets_no_control_character(hostile: Plan) -> None:
    for text in (
        render.text(hostile, targets=True),
        render.why_text(why.why(hostile, "team/app"), hostile),
    ):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text)
        assert "\u202e" not in text
    assert "\\x1b[2J" in render.text(hostile) and "\\u202eexe.txt" in render.text(hostile)


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def tags_of(html: str) -> set[str]:
    parser = Tags()
    parser.feed(html)
    return set(parser.tags)


def test_the_ticket_renders_no_link_image_or_html(hostile: Plan) -> None:
    """Rendered as GitHub does (GFM tables, raw HTML allowed, bare URLs linked)."""
    md = ticket.markdown(hostile, render.PlanFile(name=f"plans/{HOSTILE}.json", sha256="ab" * 32))
    html = MarkdownIt("gfm-like", {"linkify": True}).render(md)
    assert tags_of(html) <= {
        "h1",
        "h2",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "pre",
        "strong",
    }
    # each name whole, as text inside its code span: no backtick closed the span, no pipe
    # split the cell (the bold after it would have rendered), no URL became a link
    whole = "[APPROVED](https://evil.example) &lt;img src=x onerror=alert(1)&gt;"
    assert html.count(whole) >= 8
    assert "| **bold** &lt;script&gt;x&lt;/script&gt;" in html
    assert "\x1b" not in md and "\u202e" not in md


def test_the_page_has_no_markup_from_names(hostile: Plan) -> None:
    page = report.html(hostile)
    assert tags_of(page) <= {
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "h1",
        "h2",
        "p",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "input",
        "span",
        "svg",
        "text",
        "rect",
        "script",
    }
    assert page.count("<script>") == 1  # the page's own filter, nothing from a name
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_json_review_is_json_with_names_as_strings(hostile: Plan) -> None:
    doc = json.loads("".join(reviewjson.review_json_chunks(InMemory(hostile), [])))
    names = [i["name"] for r in doc["repositories"] for i in r["removed"]]
    assert f"team/{HOSTILE}:{HOSTILE}" in names
