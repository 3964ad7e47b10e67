"""show --format html: one self-contained page, parsed here and opened in headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import pytest

from regplan.decide.protect import parse_protect
from regplan.plans.plan import Image, Plan, Target, TargetKind, Verdict, summarize
from regplan.views import report
from regplan.views.render import PlanFile
from tests.helpers import make_plan, selection

STABLE_ROOT = "/var/lib/registry"


class Page(HTMLParser):
    """Every tag and attribute, and the text, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "input", "col"):  # void elements
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))  # <rect .../>: opened and closed

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (self.open[-3:], tag)
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture
def plan(demo_root: Path) -> Plan:
    sel = attrs.evolve(
        selection(("team/signed:v1", "old/repo")),
        protect=parse_protect("team/signed:v2\n", "running.txt"),
    )
    return make_plan(demo_root, sel, stable_root=STABLE_ROOT)


def test_the_page_is_whole_and_self_contained(plan: Plan, snapshot: Any) -> None:
    page = report.html(plan, PlanFile(name="p.json", sha256="ab" * 32))
    parsed = Page()
    parsed.feed(page)
    parsed.close()
    assert parsed.open == []  # every element closed, in order
    external = [
        (tag, a) for tag, a in parsed.tags for k, v in a.items() if k in ("src", "href") and v
    ]
    assert external == [] and not [t for t, _ in parsed.tags if t in ("link", "img", "iframe")]
    assert [t for t, _ in parsed.tags].count("rect") == 2  # team/signed and old/repo
    text = "".join(parsed.text)
    assert "Removes 3 images and keeps 1 in 2 repositories" in text
    assert "v1 (+ attestation, signature)" in text and "requested: --image old/repo" in text
    assert "not matched by --image team/signed:v1" in text  # what stays, and why
    assert "SHA-256 " + "ab" * 32 in text
    snapshot.assert_match(page, "plan.html")


def test_the_page_stays_under_10_mb_for_any_plan(plan: Plan) -> None:
    targets = tuple(
        Target(
            path=f"repositories/team{r % 7}/svc{r}/_manifests/tags/v{'x' * 100}{t}",
            kind=TargetKind.TAG,
            reason="beyond keep-last 3",
        )
        for r in range(500)
        for t in range(500)
    )
    big = attrs.evolve(plan, targets=targets, summary=summarize(targets), images=())
    page = report.html(big)  # a plan made before image records: the removed images
    assert len(page.encode()) <= report.HTML_LIMIT
    assert f"{250_000 - report.ROWS} more images are not listed here" in page
    images = tuple(
        Image(
            repo=f"team{r % 7}/svc{r}",
            tag=f"v{'x' * 100}{t}",
            digest="sha256:" + "a" * 64,
            verdict=Verdict.REMOVED if t % 2 else Verdict.KEPT,
            reason="beyond keep-last 3: rank 4 by push time " + "y" * 200,
            bytes=10**9,
        )
        for r in range(500)
        for t in range(500)
    )
    page = report.html(attrs.evolve(big, images=images))
    assert len(page.encode()) <= report.HTML_LIMIT
    assert f"{250_000 - report.ROWS} more images are not listed here" in page


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
            pytest.fail("chromium missing (apt-get install chromium)")
        pytest.skip("chromium missing (apt-get install chromium)")
    return found


def browse(tmp_path: Path, *args: str, width: int = 1100) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={width},900",
            *args,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_chromium_renders_the_page_and_filters_its_table(plan: Plan, tmp_path: Path) -> None:
    page = tmp_path / "plan.html"
    page.write_text(report.html(plan))
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    for name in ("blank", "plan"):
        shot = browse(
            tmp_path, f"--screenshot={tmp_path / name}.png", f"file://{tmp_path}/{name}.html"
        )
        assert (tmp_path / f"{name}.png").is_file(), shot.stderr.decode()[-500:]
    # a blank page compresses to almost nothing; a rendered page does not
    assert (tmp_path / "plan.png").stat().st_size > 5 * (tmp_path / "blank.png").stat().st_size
    dom = browse(tmp_path, "--dump-dom", f"file://{page}#filter=signed").stdout.decode()
    # old/repo's two rows filtered out in the browser; team/signed's removed v1 and kept v2
    assert dom.count('hidden=""') == 2
    assert '<span id="shown">2</span>' in dom
    assert '<tr class="kept"><td><code>team/signed</code></td><td><code>v2 (+ signature)' in dom
    kept = browse(tmp_path, "--dump-dom", f"file://{page}#filter=kept").stdout.decode()
    assert '<span id="shown">1</span>' in kept  # the kept view: what stays, and why


BROKEN_WORDS = """<script>
const broken = [];
for (const cell of document.querySelectorAll('th, td')) {
  if (cell.querySelector('code')) continue;  // a long name may break where it must
  const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    // a word, or its part up to a hyphen or a slash (where a line may break)
    for (const m of node.data.matchAll(/[^\\s\\/-]+[\\/-]?/g)) {
      if (m[0].length > 40) continue;  // a name longer than a column: broken where it must
      const r = document.createRange();
      r.setStart(node, m.index);
      r.setEnd(node, m.index + m[0].length);
      const lines = new Set(Array.from(r.getClientRects(), x => Math.round(x.top)));
      if (lines.size > 1) broken.push(m[0]);
    }
  }
}
document.body.insertAdjacentHTML('beforeend',
  '<pre id="broken">' + JSON.stringify(broken) + '</pre>');
</script>"""
"""Appended to a page: lists every word of a heading or a cell of text (not code) that
the browser laid out on more than one line."""


def test_no_word_breaks_mid_word_at_1400_pixels(plan: Plan, tmp_path: Path) -> None:
    """#33.12: long names and reasons in the images table squeezed "Verdict", "Size",
    "removed" and "Repository" onto two lines ("Repositor y"): headings, verdicts, sizes
    and words of text stay whole; only a name too long for its column is broken."""
    images = tuple(
        Image(
            repo="production/payments/gateway-service",
            tag="release-2026.01.15-build-" + "a" * 60 + f"-{n}",
            digest=f"sha256:{n:064x}",
            verdict=Verdict.REMOVED if n % 2 else Verdict.KEPT,
            reason="beyond keep-last 5: rank 7 by push time (pushed 2026-01-15T10:00:00Z); "
            "policy rule production-keep-releases in /etc/regplan/policies/retention.yaml",
            bytes=123_456_789,
        )
        for n in range(6)
    )
    page = tmp_path / "long.html"
    html = report.html(attrs.evolve(plan, images=images))
    page.write_text(html.replace("</body>", BROKEN_WORDS + "</body>"))
    for width in (1400, 1100):
        dom = browse(tmp_path, "--dump-dom", f"file://{page}", width=width).stdout.decode()
        assert '<pre id="broken">[]</pre>' in dom, (width, dom[dom.find('id="broken"') :])


def test_two_long_names_never_render_the_same(plan: Plan) -> None:
    """#33.3 in the page too: a name in a row with a verdict is clipped in its middle, with
    a marker that tells it from every other name, never at its end."""
    names = ["x" * 350 + "1" + "y" * 100, "x" * 350 + "2" + "y" * 100]
    images = tuple(
        Image(repo="team/long", tag=tag, digest=f"sha256:{n:064x}", verdict=v, reason="r")
        for n, (tag, v) in enumerate(zip(names, (Verdict.REMOVED, Verdict.KEPT), strict=True))
    )
    page = report.html(attrs.evolve(plan, images=images))
    rows = tuple(f'<tr class="{v}"><td><code>team/long' for v in ("removed", "kept"))
    cells = [
        line.split("<td><code>")[2].split("</code>")[0]
        for line in page.splitlines()
        if line.startswith(rows)
    ]
    assert len(cells) == 2 and cells[0] != cells[1]
    assert all(c.startswith("x" * 80) and c.endswith("y" * 80) for c in cells)
