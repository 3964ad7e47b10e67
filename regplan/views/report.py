"""``show --format html``: one self-contained page for reviewers. Pure: plan in, HTML out.

No network: the style, the chart (inline SVG) and the table filter (a few lines
of inline script) are all in the page. The removed images' table is capped so
the page stays under 10 MB for any plan; the plan file holds the full list.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from regplan.plans.plan import Plan
from regplan.plans.planfile import Source
from regplan.plans.signing import Checked
from regplan.views.overview import ImagesOverview, Overview, counted, overview
from regplan.views.render import (
    PlanFile,
    command_line,
    distinct,
    human_bytes,
    images_headline,
    policy_fact,
    signatures_fact,
    storage_words,
    unchecked,
    where,
    who,
)

HTML_LIMIT = 10_000_000
"""Bytes of the page at the most: 20,000 rows of at most some 700 bytes (cells are
clipped to 300 characters), 3 listings of 200, and the rest."""
ROWS = 10_000
"""Removed images listed in the table at the most."""
BARS = 15
"""Repositories drawn in the chart; the rest are summed in one bar."""
LISTED = 200
"""Kept entries and problems listed at the most."""

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1b1f24;max-width:1100px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:2em}
table{border-collapse:collapse;width:100%;table-layout:fixed}
td,th{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top;
overflow-wrap:break-word}th{background:#f6f8fa}td code{overflow-wrap:anywhere}
code{font-size:12px}
.facts th{width:9em}.num{text-align:right;white-space:nowrap}
tr.removed td:nth-child(3){color:#cf222e;font-weight:600}
tr.kept td:nth-child(3){color:#1a7f37}
.note{color:#57606a}input{font-size:14px;padding:4px;width:24em}
svg text{font:12px system-ui,sans-serif}
"""

SCRIPT = """
const box = document.getElementById('filter');
const rows = Array.from(document.querySelectorAll('#images tbody tr'));
function apply() {
  const q = box.value.toLowerCase();
  let shown = 0;
  for (const r of rows) { const hit = r.textContent.toLowerCase().includes(q);
    r.hidden = !hit; if (hit) shown++; }
  document.getElementById('shown').textContent = shown;
}
box.addEventListener('input', apply);
const m = location.hash.match(/filter=([^&]*)/);
if (m) { box.value = decodeURIComponent(m[1]); }
apply();
"""


def _chart(ov: Overview) -> str:
    """Bytes freed by repository as horizontal bars (inline SVG)."""
    rows = ov.by_repository
    bars = [(r, b) for r, _, b in rows[:BARS]]
    rest = sum(b for _, _, b in rows[BARS:])
    if rest:
        bars.append((f"{len(rows) - BARS} more repositories", rest))
    if not bars:
        return ""
    top = max(b for _, b in bars) or 1
    height = 24 * len(bars) + 10
    parts = [
        f'<svg width="900" height="{height}" role="img" aria-label="bytes freed by repository">'
    ]
    for i, (repo, size) in enumerate(bars):
        y = 5 + 24 * i
        width = max(1, int(480 * size / top))
        label = escape(repo if len(repo) <= 40 else repo[:39] + "…")
        parts.append(
            f'<text x="0" y="{y + 15}">{label}</text>'
            f'<rect x="300" y="{y}" width="{width}" height="18" fill="#2f81f7"/>'
            f'<text x="{306 + width}" y="{y + 15}">{escape(human_bytes(size))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def html(
    plan: Plan | Source,
    plan_file: PlanFile | None = None,
    signatures: Sequence[Checked] | None = None,
) -> str:
    ov = overview(plan, image_cap=ROWS)
    plan = ov.header
    checked = unchecked(plan) if signatures is None else signatures
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>regplan plan {escape(plan.plan_id)}</title><style>{STYLE}</style></head><body>",
        f"<h1>regplan plan <code>{escape(plan.plan_id)}</code></h1>",
        '<table class="facts">',
        *(f"<tr><th>{k}</th><td>{escape(v)}</td></tr>" for k, v in _facts(ov, plan_file, checked)),
        "</table>",
    ]
    chart = _chart(ov)
    if chart:
        out += ["<h2>Bytes freed by repository</h2>", chart]
    out += _images(ov)
    out += _listing(
        "Protected",
        ("Line", "Reference", "Keeps"),
        [
            (p.source, p.ref, ", ".join(p.matches) or "matches nothing")
            for p in plan.request.selection.protect
        ],
        widths=("20%", "30%"),
    )
    out += _listing(
        "Storage kept",
        ("Path", "Why", "For"),
        [(k.path, k.reason, ", ".join(k.refs)) for k in ov.kept],
        ov.kept_count,
        widths=("45%", "25%"),
    )
    out += _listing(
        "Problems",
        ("Code", "Path", "Message"),
        [(p.code.value, p.path, p.message) for p in ov.problems],
        ov.problems_count,
        widths=("15%", "40%"),
    )
    out += _listing(
        "Signatures",
        ("Check", "Role and signer", "Key, time, where"),
        [
            (c.state.value, f"{c.role}: {who(c)}", f"{c.keyid} at {c.signed_at}{where(c)}")
            for c in checked
        ],
        widths=("15%", "30%"),
    )
    out += [f"<script>{SCRIPT}</script>", "</body></html>", ""]
    return "\n".join(out)


def _facts(
    ov: Overview, plan_file: PlanFile | None, checked: Sequence[Checked]
) -> list[tuple[str, str]]:
    """The table at the top: what the plan is, where, by whom, and what it does."""
    plan = ov.header
    s = plan.summary
    fp = plan.fingerprint
    kinds = storage_words(s.by_kind)
    facts = [
        ("Plan", plan.plan_id),
        ("Root", plan.root),
        ("Command", command_line(plan)),
        *([("Policy", fact)] if (fact := policy_fact(plan)) is not None else []),
        ("Created", f"{plan.created_at} by {plan.tool.name} {plan.tool.version}"),
        ("Removes", f"{counted(s.targets, 'directory')}, {human_bytes(s.bytes)} ({kinds})"),
        ("Storage kept", f"{ov.kept_count} paths the request touched that stay"),
        ("Problems", str(ov.problems_count)),
        ("Fingerprint", f"{fp.before[:16]} -> {fp.after[:16]} ({fp.entries} paths)"),
        ("Signatures", signatures_fact(checked)),
    ]
    if plan_file is not None:
        facts.insert(1, ("Plan file", f"{plan_file.name}, SHA-256 {plan_file.sha256}"))
    return facts


FILTER = (
    '<p><input id="filter" placeholder="filter: repository, tag, rule, signature…" '
    'aria-label="filter"> <span id="shown">{shown}</span> shown</p>'
)


def _images(ov: Overview) -> list[str]:
    """The images table: per repository each image removed and kept with its rule (from
    the plan's records), or, for plans made before them, the images removed."""
    records = ov.image_records
    out, more = _removed_only(ov.images) if records is None else _records(records)
    if more > 0:
        out.append(
            f'<p class="note">{more} more images are not listed here: '
            "<code>regplan show --json</code> lists every one.</p>"
        )
    return out


def _removed_only(images: Sequence[tuple[str, list[str]]]) -> tuple[list[str], int]:
    listed = images[:ROWS]
    out = [
        f"<h2>Images removed ({len(images)})</h2>",
        FILTER.format(shown=len(listed)),
        '<table id="images">' + _heads(("Image", "60%"), ("With it", "")) + "<tbody>",
        *(
            f"<tr><td><code>{_e(distinct(i))}</code></td><td>{_e(', '.join(k))}</td></tr>"
            for i, k in listed
        ),
        "</tbody></table>",
    ]
    return out, len(images) - len(listed)


def _records(records: ImagesOverview) -> tuple[list[str], int]:
    rows = [(repo, image) for repo in records.repos for image in (*repo.removed, *repo.kept)]
    listed = rows[:ROWS]
    out = [
        f"<h2>Images</h2><p>{escape(images_headline(records))}</p>",
        FILTER.format(shown=len(listed)),
        '<table id="images">'
        + _heads(
            ("Repository", "18%"),
            ("Image", "26%"),
            ("Verdict", "6.5em"),
            ("Size", "7em"),
            *((("Last pulled", "12em"),) if records.with_pulls else ()),
            ("Why", ""),
            num="Size",
        )
        + "<tbody>",
        *(
            f'<tr class="{i.verdict.value}"><td><code>{_e(distinct(r.name))}</code></td>'
            f"<td><code>{_e(distinct(r.label(i)))}</code></td><td>{i.verdict.value}</td>"
            f'<td class="num">{human_bytes(i.bytes)}</td>'
            + (f"<td>{_e(records.pulled(i))}</td>" if records.with_pulls else "")
            + f"<td>{_e(i.reason)}</td></tr>"
            for r, i in listed
        ),
        "</tbody></table>",
    ]
    return out, records.removed + records.kept - len(listed)


def _e(value: str, width: int = 300) -> str:
    """Escaped, and clipped so that no row can push the page past HTML_LIMIT."""
    return escape(value if len(value) <= width else value[: width - 1] + "…")


def _heads(*heads: tuple[str, str], num: str = "") -> str:
    """A table's headings and its columns' widths ("": the rest; the column ``num`` is
    of numbers). The table's layout is fixed: a long name in one column never squeezes
    the words of another, nor its heading, onto two lines."""
    cells = []
    for head, width in heads:
        extra = ' class="num"' if head == num else ""
        extra += f' style="width:{width}"' if width else ""
        cells.append(f"<th{extra}>{head}</th>")
    return f"<thead><tr>{''.join(cells)}</tr></thead>"


def _listing(
    title: str,
    heads: tuple[str, str, str],
    rows: Sequence[tuple[str, str, str]],
    total: int | None = None,
    widths: tuple[str, str] = ("40%", "30%"),
) -> list[str]:
    """The first LISTED rows of ``total`` (default: of ``rows``), the first two columns
    ``widths`` wide."""
    total = len(rows) if total is None else total
    if not total:
        return []
    first, second, third = heads
    out = [f"<h2>{title} ({total})</h2>", "<table>"]
    out.append(_heads((first, widths[0]), (second, widths[1]), (third, "")))
    out += [
        f"<tr><td><code>{_e(a)}</code></td><td>{_e(b)}</td><td>{_e(c)}</td></tr>"
        for a, b, c in rows[:LISTED]
    ]
    out.append("</table>")
    if total > LISTED:
        out.append(f'<p class="note">… and {total - LISTED} more (in the plan file).</p>')
    return out
