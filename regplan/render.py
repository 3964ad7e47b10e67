"""Text and Markdown views of plans. Pure: plan in, string out."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from regplan.apply import ApplyResult, RollbackResult
    from regplan.check import Report as CheckReport
    from regplan.journal import ApplyRecord
    from regplan.why import Answer as WhyAnswer
from regplan.overview import Overview, overview
from regplan.plan import Plan, Target, TargetKind
from regplan.planfile import Source, source


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def image_line(image: str, kinds: Sequence[str]) -> str:
    """``team/app:v1 (+ signature, attestation)``"""
    return f"{image} (+ {', '.join(kinds)})" if kinds else image


def command_line(plan: Plan) -> str:
    return shlex.join(plan.request.argv)


def _refs(refs: tuple[str, ...]) -> str:
    return ", ".join(refs)


SUMMARY_CAP = 30
"""Rows of each list in the text summary; the rest is counted (``show --targets``)."""


def text(plan: Plan | Source, *, targets: bool = False) -> str:
    """The review summary (a few hundred lines at most, whatever the plan's size), or,
    with ``targets``, every directory the plan removes as well."""
    return "".join(f"{line}\n" for line in text_lines(plan, targets=targets))


def text_lines(plan: Plan | Source, *, targets: bool = False) -> Iterator[str]:
    """``text`` line by line: the summary from one pass over the targets, then, with
    ``targets``, every target from a second pass, printed as it is read."""
    src = source(plan)
    ov = overview(src)
    yield from _summary_lines(ov)
    if targets and ov.header.summary.targets:
        yield from _every_target(ov.header, src.targets())
    elif ov.header.summary.targets:
        yield ""
        yield "Every directory, with its reason: regplan show PLAN --targets"


def _summary_lines(ov: Overview) -> Iterator[str]:
    plan = ov.header
    fp = plan.fingerprint
    yield f"Plan {plan.plan_id}  (made {plan.created_at} by {plan.tool.name} {plan.tool.version})"
    yield f"Root:        {plan.root}"
    yield f"Command:     {command_line(plan)}"
    yield f"Fingerprint: {fp.before[:16]} -> {fp.after[:16]}  ({fp.entries} paths, {fp.algorithm})"
    yield ""
    s = plan.summary
    if not s.targets:
        yield "Nothing to remove."
    else:
        kinds = ", ".join(f"{n} {k}" for k, n in s.by_kind.items())
        yield f"Removes {s.targets} directories, {human_bytes(s.bytes)} ({kinds})."
        if ov.images:
            yield ""
            yield f"Images removed ({len(ov.images)}):"
            yield from _capped_lines([f"  {image_line(i, k)}" for i, k in ov.images], "images")
        yield ""
        yield f"By repository ({len(ov.by_repository)}, largest first):"
        yield from _capped_lines(
            [
                f"  {repo}: {ov.what[repo]}; {human_bytes(size)} in {n} directories"
                for repo, n, size in ov.by_repository
            ],
            "repositories",
        )
    protect = plan.request.selection.protect
    if protect:
        yield ""
        yield f"Protected ({len(protect)} --protect lines):"
        yield from _capped_lines(
            [
                f"  {p.source}: {p.ref} -> {', '.join(p.matches) or 'matches nothing'}"
                for p in protect
            ],
            "lines",
        )
    if ov.kept_count:
        yield ""
        yield f"Kept ({ov.kept_count}: touched by the request, still needed):"
        yield from _capped_lines(
            [
                f"  {k.path}\n    {k.reason}"
                + (f"; refs: {_clip(_refs(k.refs))}" if k.refs else "")
                for k in ov.kept
            ],
            "kept",
            total=ov.kept_count,
        )
    if ov.problems_count:
        yield ""
        yield f"Problems ({ov.problems_count}, nothing they touch is removed):"
        yield from _capped_lines(
            [f"  {p.code.value}: {p.path}: {p.message}" for p in ov.problems],
            "problems",
            total=ov.problems_count,
        )
    yield ""
    yield "Signatures:"
    sigs = [f"  {g.role}: {g.signer} ({g.keyid}) at {g.signed_at}" for g in plan.signatures]
    yield from sigs or ["  none"]


def _every_target(plan: Plan, targets: Iterable[Target]) -> Iterator[str]:
    yield ""
    yield f"Every directory ({plan.summary.targets}, in the order they are moved):"
    width = max(len(k.value) for k in TargetKind)
    for t in targets:
        size = f"  {human_bytes(t.bytes)}" if t.bytes else ""
        yield f"  {t.kind.value:<{width}}  {t.path}{size}"
        yield f"  {'':<{width}}    {t.reason}"
        if t.refs:
            yield f"  {'':<{width}}    refs: {_refs(t.refs)}"


def _capped_lines(
    rows: Sequence[str], what: str, cap: int = SUMMARY_CAP, total: int | None = None
) -> list[str]:
    """The first ``cap`` rows, then how many more of ``total`` (default: of ``rows``)."""
    total = len(rows) if total is None else total
    if total <= cap:
        return list(rows)
    return [*rows[:cap], f"  … and {total - cap} more {what}"]


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


MARKDOWN_LIMIT = 30_000
"""Characters of a change-ticket rendering, whatever the plan's size (a Jira comment
holds 32,767, a GitHub comment 65,536)."""
CELL = 160
"""Characters of one table cell at the most; longer ones end with an ellipsis."""


@attrs.frozen(kw_only=True)
class PlanFile:
    """The file a ticket rendering pins: its name and the SHA-256 of its bytes."""

    name: str
    sha256: str


def _clip(value: str, width: int = CELL) -> str:
    value = _cell(value)
    return value if len(value) <= width else value[: width - 1] + "…"


def _capped(rows: Sequence[str], cap: int, more: str, total: int | None = None) -> list[str]:
    """The first ``cap`` rows, then one line saying how many more of ``total`` (default:
    of ``rows``; ``more`` names them)."""
    total = len(rows) if total is None else total
    if total <= cap:
        return list(rows)
    return [*rows[:cap], f"| … {total - cap} more {more} |"]


def markdown(plan: Plan | Source, plan_file: PlanFile | None = None) -> str:
    """A change-ticket view of any plan in at most MARKDOWN_LIMIT characters: what goes in
    image terms, bytes by repository, what is kept because shared or protected, problems,
    signatures, and the exact verify and apply commands; the full list stays in the plan
    file it pins by SHA-256."""
    ov = overview(plan)
    cap = 40
    while True:
        text = _markdown(ov, plan_file, cap)
        if len(text) <= MARKDOWN_LIMIT or cap <= 1:
            return text[:MARKDOWN_LIMIT]
        cap //= 2


def _markdown(ov: Overview, plan_file: PlanFile | None, cap: int) -> str:
    plan = ov.header
    fp = plan.fingerprint
    s = plan.summary
    kinds = ", ".join(f"{n} {k}" for k, n in s.by_kind.items()) or "nothing"
    name = plan_file.name if plan_file is not None else "PLAN"
    out = [f"# regplan plan `{plan.plan_id}`", "", "| | |", "|---|---|"]
    if plan_file is not None:
        out.append(f"| Plan file | `{_clip(plan_file.name)}`, SHA-256 `{plan_file.sha256}` |")
    out += [
        f"| Root | `{_clip(plan.root)}` |",
        f"| Command | `{_clip(command_line(plan), 400)}` |",
        f"| Created | {plan.created_at} by {plan.tool.name} {plan.tool.version} |",
        f"| Removes | {s.targets} directories, {human_bytes(s.bytes)} ({kinds}) |",
        f"| Keeps | {ov.kept_count} touched but still needed |",
        f"| Problems | {ov.problems_count} |",
        f"| Fingerprint | `{fp.before[:16]}` -> `{fp.after[:16]}` ({fp.entries} paths) |",
        f"| Signatures | {len(plan.signatures)} |",
        "",
    ]
    images = ov.images
    if images:
        out += [f"## Images removed ({len(images)})", "", "| Image | With it |", "|---|---|"]
        rows = [f"| `{_clip(i)}` | {', '.join(k) or ''} |" for i, k in images]
        out += [*_capped(rows, cap, "images"), ""]
    by_repo = ov.by_repository
    if by_repo:
        out += [
            "## Bytes by repository",
            "",
            "| Repository | Directories | Bytes |",
            "|---|--:|--:|",
        ]
        rows = [f"| `{_clip(r)}` | {n} | {human_bytes(b)} |" for r, n, b in by_repo]
        out += [*_capped(rows, cap, "repositories"), ""]
    protect = plan.request.selection.protect
    if protect:
        out += ["## Protected", "", "| Line | Reference | Keeps |", "|---|---|---|"]
        rows = [
            f"| {_clip(p.source, 80)} | `{_clip(p.ref)}` | "
            f"{_clip(', '.join(p.matches)) or '**matches nothing**'} |"
            for p in protect
        ]
        out += [*_capped(rows, cap, "lines"), ""]
    if ov.kept_count:
        out += [f"## Kept ({ov.kept_count})", "", "| Path | Why | For |", "|---|---|---|"]
        rows = [
            f"| `{_clip(k.path)}` | {_clip(k.reason)} | {_clip(_refs(k.refs))} |" for k in ov.kept
        ]
        out += [*_capped(rows, cap // 2 or 1, "kept", ov.kept_count), ""]
    if ov.problems_count:
        out += [
            f"## Problems ({ov.problems_count})",
            "",
            "| Code | Path | Message |",
            "|---|---|---|",
        ]
        rows = [f"| {p.code.value} | `{_clip(p.path)}` | {_clip(p.message)} |" for p in ov.problems]
        out += [*_capped(rows, cap // 2 or 1, "problems", ov.problems_count), ""]
    out += ["## Signatures", "", "| Role | Signer | Key | Signed at |", "|---|---|---|---|"]
    rows = [
        f"| {g.role} | {_clip(g.signer, 80)} | `{g.keyid}` | {g.signed_at} |"
        for g in plan.signatures
    ]
    out += [*_capped(rows, cap, "signatures"), ""]
    root = shlex.quote(plan.root)
    out += [
        "## Verify and apply",
        "",
        "```sh",
        f"regplan verify {shlex.quote(name)} --trust KEY.pub --root {root}",
        f"regplan apply {shlex.quote(name)} --trust KEY.pub --root {root} --registry-url URL",
        "```",
        "",
        f"The full list of the {s.targets} directories is in the attached plan file "
        f"(`regplan show {shlex.quote(name)}`).",
    ]
    return "\n".join(out) + "\n"


def result_json(result: ApplyResult | RollbackResult) -> dict[str, object]:
    """An apply's or rollback's result as ``--json`` prints it (every field, paths as text)."""
    return {
        k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for k, v in attrs.asdict(result, recurse=False).items()
    }


def applied(r: ApplyResult, advice: str) -> str:
    verb = "Resumed and finished" if r.resumed else "Applied"
    return "\n".join(
        [
            f"{verb} plan {r.plan_id} as {r.apply_id}: moved {r.moved} directories, "
            f"{human_bytes(r.bytes)} now in quarantine ({r.quarantine}).",
            advice,
            f"Undo with: regplan rollback {r.apply_id}   Free the space with: "
            f"regplan purge {r.apply_id}",
        ]
    )


def rolled_back(r: RollbackResult, advice: str) -> str:
    return (
        f"Rolled back {r.apply_id}: {r.restored} directories moved back, "
        f"{r.recreated} pruned directories recreated"
        + (", the tree is as before the apply." if r.fingerprint_ok else ".")
        + "\n"
        + advice
    )


def why_text(answer: WhyAnswer, plan: Plan) -> str:
    """``regplan why``: the verdict on one line, then what it causes or what keeps it."""
    verdict = answer.verdict.value
    if answer.targets:
        lines = [
            f"{answer.ref}: {verdict} by plan {plan.plan_id} ({len(answer.targets)} directories)"
        ]
        lines += [f"  {t.kind.value} {t.path}: {t.reason}" for t in answer.targets]
    elif answer.kept:
        lines = [f"{answer.ref}: {verdict} by plan {plan.plan_id}"]
        lines += [
            f"  {k.path}: {k.reason}" + (f" (kept for {_refs(k.refs)})" if k.refs else "")
            for k in answer.kept
        ]
    else:
        lines = [f"{answer.ref}: {verdict} by plan {plan.plan_id}"]
    return "\n".join(lines)


def why_json(answer: WhyAnswer, plan: Plan) -> dict[str, object]:
    return {
        "plan_id": plan.plan_id,
        "ref": answer.ref,
        "verdict": answer.verdict.value,
        "targets": [
            {"path": t.path, "kind": t.kind.value, "reason": t.reason, "refs": list(t.refs)}
            for t in answer.targets
        ],
        "kept": [{"path": k.path, "reason": k.reason, "refs": list(k.refs)} for k in answer.kept],
    }


def check_json(report: CheckReport, url: str) -> dict[str, object]:
    """``check --json``: the totals and every failure."""
    return {
        "registry": url,
        "ok": report.ok,
        "images": report.images,
        "manifests": report.manifests,
        "blobs": report.blobs,
        "failures": [{"image": f.image, "what": f.what} for f in report.failures],
        "removed_checked": report.removed_checked,
        "still_served": [{"image": f.image, "what": f.what} for f in report.still_served],
    }


def check_report(report: CheckReport, url: str) -> str:
    """The result of ``regplan check``: every broken image and every removed thing still
    served on a line of its own, then the totals."""
    lines = [f"BROKEN {f.image}: {f.what}" for f in report.failures]
    lines += [f"STILL SERVED {f.image}: {f.what}" for f in report.still_served]
    verdict = "all whole" if not report.failures else f"{len(report.failures)} broken"
    lines.append(
        f"Checked {report.images} images ({report.manifests} manifests, {report.blobs} blobs) "
        f"through {url}: {verdict}."
    )
    if report.removed_checked:
        gone = report.removed_checked - len(report.still_served)
        lines.append(f"Of {report.removed_checked} things the plan removed, {gone} are gone.")
    return "\n".join(lines)


def purged(done: Sequence[ApplyRecord]) -> str:
    if not done:
        return "Nothing to purge."
    return "\n".join(f"Purged {r.apply_id} (plan {r.plan_id})." for r in done)


def history(found: Sequence[ApplyRecord]) -> str:
    if not found:
        return "No applies recorded.\n"
    rows = [("APPLY ID", "STATE", "PLAN", "STARTED", "TARGETS", "IN QUARANTINE")]
    rows += [
        (r.apply_id, r.state.value, r.plan_id, r.started_at, str(r.targets), human_bytes(r.bytes))
        for r in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines += [f"  {r.apply_id}: {r.note}" for r in found if r.note]
    return "\n".join(lines) + "\n"
