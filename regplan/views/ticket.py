"""``show --format markdown``: the change ticket. Pure: plan in, Markdown out.

At most MARKDOWN_LIMIT characters whatever the plan's size: the plan file pinned by
SHA-256, the images removed and kept per repository with their rules, storage
detail, ``--protect`` lines, problems, signatures as checked, and a runbook with
the plan's own paths.

Every string from the storage, the request or the plan file (which may have been
edited: a ticket is rendered before anything is verified) is put in a code span
(:func:`code`): no name renders as a link, an image, emphasis or HTML, and none
closes its span or its table cell.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from regplan.plans import rule as approval_rule
from regplan.plans.plan import Plan, Verdict
from regplan.plans.planfile import Source
from regplan.plans.rule import Rule
from regplan.plans.signing import Checked
from regplan.scan.layout import printable
from regplan.views.overview import TOTAL_SHOWN, ImagesOverview, Overview, counted, overview
from regplan.views.render import (
    NAME,
    PlanFile,
    command_line,
    distinct,
    human_bytes,
    images_headline,
    policy_fact,
    signatures_fact,
    signatures_heading,
    storage_words,
    unchecked,
    who,
)

MARKDOWN_LIMIT = 30_000
"""Characters of a change-ticket rendering, whatever the plan's size (a Jira comment
holds 32,767, a GitHub comment 65,536)."""
CELL = 160
"""Characters of one value at the most; longer ones end with an ellipsis."""
_TICKS = re.compile(r"`+")


def _fence(text: str, least: int = 1) -> str:
    """Backticks no run of them in ``text`` can close (at least ``least``)."""
    return "`" * max(least, 1 + max((len(m) for m in _TICKS.findall(text)), default=0))


def code(value: object, width: int = CELL) -> str:
    """``value`` as an inert code span on one line: printable, clipped to ``width``,
    fenced with more backticks than it holds, ``|`` escaped (a GFM table cell ends at
    an unescaped one even inside code); nothing at all for an empty value (an empty
    cell, not a pair of backticks)."""
    text = printable(str(value))
    if not text:
        return ""
    text = text if len(text) <= width else text[: width - 1] + "…"
    fence = _fence(text)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    escaped = text.replace("|", "\\|")
    return f"{fence}{pad}{escaped}{pad}{fence}"


def name_span(value: str) -> str:
    """A name in a row with a verdict, as a code span no other name renders as
    (:func:`regplan.views.render.distinct`)."""
    return code(distinct(printable(value)), NAME)


def _capped(rows: Sequence[str], cap: int, more: str, total: int | None = None) -> list[str]:
    """The first ``cap`` rows, then one line saying how many more of ``total`` (default:
    of ``rows``; ``more`` names them)."""
    total = len(rows) if total is None else total
    if total <= cap:
        return list(rows)
    return [*rows[:cap], f"| … {total - cap} more {more} |"]


def markdown(
    plan: Plan | Source,
    plan_file: PlanFile | None = None,
    signatures: Sequence[Checked] | None = None,
    rule: Rule | None = None,
) -> str:
    """The ticket (see the module's docstring); ``signatures`` as checked (default: the
    plan's own, not verified); ``rule``: the approval rule the apply will be held to
    (``apply --approvals``), whose approvers the runbook asks for by principal. The other
    tables are shortened (``cap`` rows) until every removed image has its row, or they
    are as short as they go."""
    ov = overview(plan, image_cap=TOTAL_SHOWN)
    checked = unchecked(ov.header) if signatures is None else signatures
    cap = 40
    while True:
        text, whole = _markdown(ov, plan_file, checked, cap, rule)
        if (whole and len(text) <= MARKDOWN_LIMIT) or cap <= 1:
            return text[:MARKDOWN_LIMIT]
        cap //= 2


def _markdown(
    ov: Overview,
    plan_file: PlanFile | None,
    signatures: Sequence[Checked],
    cap: int,
    rule: Rule | None = None,
) -> tuple[str, bool]:
    """The ticket with ``cap`` rows in each table but the images', which gets the room
    the rest leaves; and whether it lists every removed image."""
    plan = ov.header
    name = plan_file.name if plan_file is not None else "PLAN"
    before = [f"# regplan plan {code(plan.plan_id)}", "", *_facts(ov, plan_file, signatures)]
    before += _policy_text(plan)
    after = _tables(ov, cap)
    after += _signatures(signatures, cap)
    after += runbook(plan, name, rule, signatures)
    after += [
        "",
        f"The full list of the {counted(plan.summary.targets, 'directory')} is in the "
        f"attached plan file ({code('regplan show ' + shlex.quote(name) + ' --targets', 400)}).",
    ]
    records = ov.image_records
    whole = True
    if records is not None:
        room = MARKDOWN_LIMIT - sum(len(line) + 1 for line in (*before, *after))
        images, whole = _images(records, room, name)
    else:  # a plan made before plans recorded their images
        images = _section(
            f"Images removed ({len(ov.images)})",
            ("Image", "With it"),
            [f"| {name_span(i)} | {code(', '.join(k))} |" for i, k in ov.images],
            cap,
            "images",
        )
    return "\n".join([*before, *images, *after]) + "\n", whole


def _tables(ov: Overview, cap: int) -> list[str]:
    """Storage detail, ``--protect`` lines, storage kept and problems, ``cap`` rows each
    (kept entries and problems half as many)."""
    out = _section(
        "Storage detail: bytes by repository",
        ("Repository", "Directories", "Bytes"),
        [f"| {code(r)} | {n} | {human_bytes(b)} |" for r, n, b in ov.by_repository],
        cap,
        "repositories",
    )
    out += _section(
        "Protected",
        ("Line", "Reference", "Keeps"),
        [
            f"| {code(p.source, 80)} | {code(p.ref)} | "
            f"{code(', '.join(p.matches)) if p.matches else '**matches nothing**'} |"
            for p in ov.header.request.selection.protect
        ],
        cap,
        "lines",
    )
    out += _section(
        f"Storage kept ({ov.kept_count})",
        ("Path", "Why", "For"),
        [f"| {code(k.path)} | {code(k.reason)} | {code(', '.join(k.refs))} |" for k in ov.kept],
        cap // 2 or 1,
        "kept",
        ov.kept_count,
    )
    out += _section(
        f"Problems ({ov.problems_count})",
        ("Code", "Path", "Message"),
        [f"| {code(p.code.value)} | {code(p.path)} | {code(p.message)} |" for p in ov.problems],
        cap // 2 or 1,
        "problems",
        ov.problems_count,
    )
    return out


POLICY_LIMIT = 6_000
"""Characters of a policy's text a ticket shows (the plan holds it all)."""


def _policy_text(plan: Plan) -> list[str]:
    """The policy the plan was made with, in a fence no line of it can close."""
    p = plan.request.policy
    if p is None:
        return []
    text = "\n".join(printable(line) for line in p.text.splitlines())
    more = ""
    if len(text) > POLICY_LIMIT:
        more = f"\n\n({len(text) - POLICY_LIMIT} more characters: the plan holds the whole text)"
        text = text[:POLICY_LIMIT]
    fence = _fence(text, least=3)  # a fenced block has three at the least
    return [f"## Policy {code(p.file)}", "", f"{fence}yaml", text, fence + more, ""]


def _facts(ov: Overview, plan_file: PlanFile | None, signatures: Sequence[Checked]) -> list[str]:
    plan = ov.header
    fp = plan.fingerprint
    s = plan.summary
    out = ["| | |", "|---|---|"]
    if plan_file is not None:
        out.append(f"| Plan file | {code(plan_file.name)}, SHA-256 {code(plan_file.sha256)} |")
    return [
        *out,
        f"| Root | {code(plan.root)} |",
        f"| Command | {code(command_line(plan), 400)} |",
        *([f"| Policy | {code(fact, 400)} |"] if (fact := policy_fact(plan)) is not None else []),
        f"| Created | {code(plan.created_at)} by {code(f'{plan.tool.name} {plan.tool.version}')} |",
        f"| Removes | {counted(s.targets, 'directory')}, {human_bytes(s.bytes)} "
        f"({storage_words(s.by_kind)}) |",
        f"| Storage kept | {ov.kept_count} paths the request touched that stay |",
        f"| Problems | {ov.problems_count} |",
        f"| Fingerprint | {code(fp.before[:16])} -> {code(fp.after[:16])} ({fp.entries} paths) |",
        f"| Signatures | {signatures_fact(signatures)} |",
        "",
    ]


def _section(
    title: str,
    heads: Sequence[str],
    rows: Sequence[str],
    cap: int,
    more: str,
    total: int | None = None,
) -> list[str]:
    """A titled table of the first ``cap`` rows (nothing when there are none)."""
    if not rows:
        return []
    head = "| " + " | ".join(heads) + " |"
    rule = "|" + "|".join("---" for _ in heads) + "|"
    return [f"## {title}", "", head, rule, *_capped(rows, cap, more, total), ""]


KEPT_EACH = 10
"""Kept images listed per repository at the most (every removed one is listed while
the ticket's size allows)."""


def _images(records: ImagesOverview, room: int, plan: str) -> tuple[list[str], bool]:
    """Per touched repository, its images removed and kept, each with its rule, in at
    most ``room`` characters: removed images have their rows first, kept ones get what
    is left; what is not listed is counted, with where to see it. True: every removed
    image is listed."""
    head = ["## Images", "", images_headline(records).replace("|", "\\|"), ""]
    pulls = records.with_pulls  # a column of last pulls
    head += ["| Repository | Image | | Size |" + (" Last pulled |" if pulls else "") + " Why |"]
    head += ["|---|---|---|--:|" + ("---|" if pulls else "") + "---|"]
    left = room - sum(len(line) + 1 for line in head) - NOTE
    chosen: set[int] = set()
    listed = {Verdict.REMOVED: 0, Verdict.KEPT: 0}
    candidates = [(r, i, Verdict.REMOVED) for r in records.repos for i in r.removed]
    candidates += [(r, i, Verdict.KEPT) for r in records.repos for i in r.kept[:KEPT_EACH]]
    rows: dict[int, str] = {}
    for r, i, verdict in candidates:
        row = (
            f"| {name_span(r.name)} | {name_span(r.label(i))} | {verdict.value} | "
            f"{human_bytes(i.bytes)} | "
            + (f"{code(records.pulled(i))} | " if pulls else "")
            + f"{code(i.reason)} |"
        )
        if len(row) + 1 > left:
            break
        left -= len(row) + 1
        rows[id(i)] = row
        chosen.add(id(i))
        listed[verdict] += 1
    table = [rows[id(i)] for r in records.repos for i in (*r.removed, *r.kept) if id(i) in chosen]
    missing = (records.removed - listed[Verdict.REMOVED], records.kept - listed[Verdict.KEPT])
    return [*head, *table, "", *_not_listed(records, missing, plan)], not missing[0]


NOTE = 400
"""Characters kept for the line that counts the images not listed."""


def _not_listed(records: ImagesOverview, missing: tuple[int, int], plan: str) -> list[str]:
    """How many images of each verdict the table does not list, and where they are."""
    removed, kept = missing
    if not removed and not kept:
        return []
    show = "regplan show " + shlex.quote(plan)
    if records.removed + records.kept <= TOTAL_SHOWN:  # the page lists them all too
        where = f"{code(show + ' --format html', 300)} (or {code('--json')}) lists every one"
    else:
        where = f"{code(show + ' --json', 300)} lists every one (the page, {TOTAL_SHOWN:,})"
    see = f"{where}; {code('regplan why', 20)} answers for one image or repository."
    if removed:
        return [
            f"**{removed} of {records.removed} removed images and {kept} of {records.kept} "
            f"kept are not listed here** (a ticket holds {MARKDOWN_LIMIT:,} characters): {see}",
            "",
        ]
    return [
        f"Every removed image is listed; {kept} of {records.kept} kept are not: {see}",
        "",
    ]


def _signatures(signatures: Sequence[Checked], cap: int) -> list[str]:
    rows = [
        f"| **{c.state.value}** | {code(c.role)} | {code(who(c), 80)} | {code(c.keyid)} | "
        f"{code(c.signed_at)} | {code(c.source + (f': {c.detail}' if c.detail else ''), 80)} |"
        for c in signatures
    ]
    head = ["## Signatures", "", signatures_heading(signatures), ""]
    table = ["| Check | Role | Signer | Key | Signed at | Where |", "|---|---|---|---|---|---|"]
    return [*head, *table, *_capped(rows, cap, "signatures"), ""]


def runbook(
    plan: Plan, name: str, rule: Rule | None = None, signatures: Sequence[Checked] = ()
) -> list[str]:
    """The change's steps with the real paths the plan was made with: approve, verify,
    apply, check, and the backout (rollback) and purge; what is not known is a
    placeholder that says what to put there. With ``rule``, the approvals it needs by
    principal (and who has given one, of ``signatures`` as checked), and an apply held
    to it (``--approvals``). The commands stand in a fenced block: each value is
    shell-quoted and printable, so none ends the block or the line."""
    root = shlex.quote(printable(plan.root))
    path = shlex.quote(printable(name))
    keyid = plan.signatures[0].keyid if plan.signatures else "the planner's key"
    held = (
        f"--approvals {shlex.quote(printable(rule.file or 'regplan-approvals.yml'))}"
        if rule is not None
        else "--require-signatures 2"
    )
    return [
        "## Runbook",
        "",
        f"`TRUST`: the team's `allowed_signers` file (or the planner's and each approver's "
        f"public key; the planner signed with {code(keyid, 80)}); `REVIEWER_KEY`: each "
        "approver's SSH key (a key file, its `.pub` in ssh-agent, or a regplan key); "
        "`URL`: the registry's address (or give its `--config CONFIG.yml`).",
        "",
        *_asked(rule, signatures),
        "```sh",
        "# 1. approve (each reviewer; writes the approval beside the plan, never into it)",
        f"regplan approve {path} --key REVIEWER_KEY --trust TRUST",
        "# 2. verify: signatures, and that the storage is still what was planned",
        f"regplan verify {path} --trust TRUST {held} --root {root}",
        "# 3. apply: the registry in read-only mode (or stopped); regplan probes it",
        f"regplan apply {path} --trust TRUST {held} --root {root} --registry-url URL",
        "# 4. restart the registry (its caches), then prove every kept image pulls",
        f"regplan check --registry-url URL --root {root} --plan {path}",
        "# backout: the apply id is printed by apply and listed by history",
        f"regplan history --root {root}",
        f"regplan rollback APPLY_ID --root {root} --registry-url URL",
        "# once the change is accepted: free the space for good",
        f"regplan purge APPLY_ID --root {root}",
        "```",
    ]


PRINCIPALS = 20
"""Principals (or patterns) of a rule a ticket names at the most."""


def _asked(rule: Rule | None, signatures: Sequence[Checked]) -> list[str]:
    """What the rule asks for, by principal, and how far the signatures checked go."""
    if rule is None:
        return []
    decision = approval_rule.decide(rule, signatures)
    own = "" if rule.planner_counts_as_approver else " (the planner's own does not count)"
    done = ", ".join(code(p, 80) for p in decision.counted[:PRINCIPALS]) or "nobody yet"
    still = (
        f"**{decision.missing} more needed**, from {_principals(decision.candidates)}."
        if decision.missing
        else "Enough approvals so far."
    )
    if decision.problem:
        still = f"**Refused whatever the approvals: {code(decision.problem, 400)}.** {still}"
    return [
        f"Approval rule {code(rule.file or 'regplan-approvals.yml', 200)} (`apply "
        f"--approvals`): the plan is made by one of {_principals(rule.planners)} and needs "
        f"**{rule.required_approvals}** approval(s) from {_principals(rule.approvers)}{own}. "
        f"Approved so far (valid signatures by trusted keys, as checked above): {done}. "
        f"{still}",
        "",
    ]


def _principals(patterns: Sequence[str]) -> str:
    shown = ", ".join(code(p, 80) for p in patterns[:PRINCIPALS])
    more = f" and {len(patterns) - PRINCIPALS} more" if len(patterns) > PRINCIPALS else ""
    return (shown + more) or "nobody"
