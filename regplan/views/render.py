"""Text and Markdown views of plans. Pure: plan in, string out."""

from __future__ import annotations

import hashlib
import itertools
import shlex
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from regplan.registry.check import Report as CheckReport
from regplan.plans.plan import Plan, Target, TargetKind, Verdict
from regplan.plans.planfile import Source, source
from regplan.plans.signing import Checked, State
from regplan.scan.layout import printable
from regplan.views.overview import (
    SHOWN_REPOS,
    ImagesOverview,
    Overview,
    counted,
    overview,
)
from regplan.views.why import Answer as WhyAnswer
from regplan.views.why import housekeeping


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


def policy_fact(plan: Plan) -> str | None:
    """The policy file a plan was made with, as a review names it (None: made with flags)."""
    p = plan.request.policy
    if p is None:
        return None
    lines = len(p.text.splitlines())
    return f"{p.file}, SHA-256 {p.sha256} ({lines} lines, held in the plan)"


def _refs(refs: tuple[str, ...]) -> str:
    return ", ".join(refs)


def unchecked(plan: Plan) -> list[Checked]:
    """A plan's own signatures, none of them verified (what a view shows without --trust)."""
    return [
        Checked(
            keyid=g.keyid,
            role=g.role,
            signer=g.signer,
            signed_at=g.signed_at,
            source="plan",
            state=State.NOT_VERIFIED,
        )
        for g in plan.signatures
    ]


def signatures_heading(checked: Sequence[Checked]) -> str:
    """What the signature list below it means: ``Signatures (…)``, ``Signatures: none``."""
    fact = signatures_fact(checked)
    return f"Signatures: {fact}" if fact.startswith("none") else f"Signatures ({fact})"


def signatures_fact(checked: Sequence[Checked]) -> str:
    """The signatures in a few words (a table's cell beside ``Signatures``): checked, or
    not, and how many paths named like approvals are no files and were ignored."""
    ignored = sum(c.state is State.IGNORED for c in checked)
    real = [c for c in checked if c.state is not State.IGNORED]
    more = f"; {ignored} ignored (not a regular file)" if ignored else ""
    if not real:
        return f"none{more}"
    if all(c.state is State.NOT_VERIFIED for c in real):
        return (
            f"{len(real)}, NOT VERIFIED: the names are what the plan claims; "
            f"pass --trust KEY.pub to check them{more}"
        )
    valid = sum(c.state is State.VALID for c in real)
    return f"{len(real)}, checked against the trusted keys: {valid} valid{more}"


def signature_line(c: Checked) -> str:
    """``VALID approver bob@review (ed25519:…) at …, in PLAN.approval-….sig``"""
    return f"{c.state.value.upper()} {c.role} {who(c)} ({c.keyid}) at {c.signed_at}{where(c)}"


def where(c: Checked) -> str:
    """Where a signature was found, and what is wrong with it."""
    place = "" if c.source == "plan" else f", in {c.source}"
    return place + (f": {c.detail}" if c.detail else "")


SUMMARY_CAP = 30
"""Rows of each list in the text summary; the rest is counted (``show --targets``)."""


def text(
    plan: Plan | Source, *, targets: bool = False, signatures: Sequence[Checked] | None = None
) -> str:
    """The review summary (a few hundred lines at most, whatever the plan's size), or,
    with ``targets``, every directory the plan removes as well."""
    lines = text_lines(plan, targets=targets, signatures=signatures)
    return "".join(f"{line}\n" for line in lines)


def text_lines(
    plan: Plan | Source, *, targets: bool = False, signatures: Sequence[Checked] | None = None
) -> Iterator[str]:
    """``text`` line by line: the summary from one pass over the targets, then, with
    ``targets``, every target from a second pass, printed as it is read. ``signatures``:
    as checked (default: the plan's own, not verified)."""
    src = source(plan)
    ov = overview(src)
    lines = _summary_lines(ov, unchecked(ov.header) if signatures is None else signatures)
    if targets and ov.header.summary.targets:
        lines = itertools.chain(lines, _every_target(ov.header, src.targets()))
    elif ov.header.summary.targets:
        lines = itertools.chain(
            lines, ["", "Every directory, with its reason: regplan show PLAN --targets"]
        )
    # every string from the storage, the request or the plan file is shown inert: no
    # escape sequence reaches the terminal, no bidi control reorders what is read
    return (printable(line) for line in lines)


def _head_lines(plan: Plan) -> Iterator[str]:
    fp = plan.fingerprint
    yield f"Plan {plan.plan_id}  (made {plan.created_at} by {plan.tool.name} {plan.tool.version})"
    yield f"Root:        {plan.root}"
    yield f"Command:     {command_line(plan)}"
    policy = policy_fact(plan)
    if policy is not None:
        yield f"Policy:      {policy}"
    yield f"Fingerprint: {fp.before[:16]} -> {fp.after[:16]}  ({fp.entries} paths, {fp.algorithm})"


def _summary_lines(ov: Overview, signatures: Sequence[Checked]) -> Iterator[str]:
    plan = ov.header
    yield from _head_lines(plan)
    yield ""
    s = plan.summary
    records = ov.image_records
    if records is not None:
        yield from _image_lines(records)
    if not s.targets:
        yield "Nothing to remove."
    else:
        yield f"Frees {human_bytes(s.bytes)}: {storage_words(s.by_kind)}."
        if ov.images and records is None:
            yield ""
            yield f"Images removed ({len(ov.images)}):"
            yield from _capped_lines([f"  {image_line(i, k)}" for i, k in ov.images], "images")
        yield ""
        yield f"Storage detail by repository ({len(ov.by_repository)}, largest first):"
        yield from _capped_lines(
            [
                f"  {repo}: {ov.what[repo]}; {human_bytes(size)}"
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
        yield f"Storage kept ({ov.kept_count}: paths the request touched that stay, and why):"
        for k in ov.kept[:SUMMARY_CAP]:  # the path, then why
            yield f"  {k.path}"
            yield f"    {k.reason}" + (f"; refs: {_clip(_refs(k.refs))}" if k.refs else "")
        if ov.kept_count > SUMMARY_CAP:
            yield f"  … and {ov.kept_count - SUMMARY_CAP} more kept"
    if ov.problems_count:
        yield ""
        yield f"Problems ({ov.problems_count}, nothing they touch is removed):"
        yield from _capped_lines(
            [f"  {p.code.value}: {p.path}: {p.message}" for p in ov.problems],
            "problems",
            total=ov.problems_count,
        )
    yield ""
    yield signatures_heading(signatures) + (":" if signatures else "")
    yield from (f"  {signature_line(c)}" for c in signatures)


def storage_words(by_kind: Mapping[str, int]) -> str:
    """``2 tags, 3 manifests, 4 layer links`` in removal order."""
    order = {k.value: k.phase for k in TargetKind}
    kinds = sorted(by_kind.items(), key=lambda kv: order.get(kv[0], len(order)))
    return ", ".join(counted(n, k) for k, n in kinds) or "nothing"


def images_headline(records: ImagesOverview) -> str:
    """``Removes 5 images and keeps 9 in 4 repositories; 2 repositories untouched.``"""
    touched = len(records.repos)
    line = (
        f"Removes {counted(records.removed, 'image')} and keeps {records.kept} in "
        f"{touched} {'repository' if touched == 1 else 'repositories'}"
    )
    if records.untouched_repos:
        images = counted(records.untouched_images, "image")
        line += f"; {records.untouched_repos} more untouched ({images})"
    return line + "."


def _image_lines(records: ImagesOverview) -> Iterator[str]:
    """Per touched repository: its images removed (-) and kept (+), each with the rule."""
    yield images_headline(records) + "  (- removed, + kept; sizes count shared layers)"
    for repo in records.repos[:SHOWN_REPOS]:
        yield ""
        yield f"{repo.name}: {repo.summary()}"
        width = max(len(repo.label(i)) for i in (*repo.removed, *repo.kept))
        pulled = max(len(records.pulled(i)) for i in (*repo.removed, *repo.kept))
        for mark, shown, verdict in (
            ("-", repo.removed, Verdict.REMOVED),
            ("+", repo.kept, Verdict.KEPT),
        ):
            yield from (
                f"  {mark} {repo.label(i):<{width}}  {human_bytes(i.bytes):>9}  "
                + (f"{records.pulled(i):<{pulled}}  " if pulled else "")
                + i.reason
                for i in shown
            )
            more = repo.counts[verdict] - len(shown)
            if more:
                yield f"  {mark} … and {more} more {verdict.value}"
    if len(records.repos) > SHOWN_REPOS:
        yield ""
        yield f"… and {len(records.repos) - SHOWN_REPOS} more repositories (regplan show --json)"
    yield ""


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


@attrs.frozen(kw_only=True)
class PlanFile:
    """The file a ticket or page pins: its name and the SHA-256 of its bytes."""

    name: str
    sha256: str


CLIP = 160
"""Characters of one listed value in the text summary at the most."""
NAME = 200
"""Characters of a name in a row with a verdict shown whole; a longer one keeps both
ends and its middle is replaced by a marker with its digest (:func:`distinct`)."""
ENDS = 80
"""Characters kept at each end of a name clipped in the middle."""


def distinct(name: str) -> str:
    """A name no other name renders as: whole up to NAME characters; longer,
    ``head…[12 hex of its SHA-256]…tail`` (two names that share both ends still differ
    in the marker). Never clipped at its end, where release tags differ."""
    if len(name) <= NAME:
        return name
    mark = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return f"{name[:ENDS]}…[{mark}]…{name[-ENDS:]}"


def _clip(value: str, width: int = CLIP) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"


def who(c: Checked) -> str:
    """The signer: a valid signature's trusted key's name (and what the signature claims,
    when it claims another); otherwise what the signature claims (an SSH signature
    made by ssh-keygen claims nothing)."""
    if c.state is State.VALID and c.name:
        return c.name if c.signer in ("", c.name) else f"{c.name} (says {c.signer})"
    return c.signer or "(unnamed)"


def why_text(answer: WhyAnswer, plan: Plan) -> str:
    """``regplan why``: the verdict on one line, then the images and their rules, then
    what it causes or what the storage keeps for it. Each field is made printable
    before the line is put together: no reason or name can start a line of its own."""
    return "\n".join(_why_lines(answer, plan))


def _why_lines(answer: WhyAnswer, plan: Plan) -> Iterator[str]:
    p = printable
    ref, plan_id = p(answer.ref), p(plan.plan_id)
    if answer.verdict.value == "not found":
        nearest = ", ".join(p(n) for n in answer.nearest)
        yield f"{ref}: not in the registry when plan {plan_id} was made" + (
            f"; nearest: {nearest}" if nearest else ""
        )
        return
    tidy = housekeeping(answer)
    words = storage_words(Counter(t.kind.value for t in tidy))
    head = f"{ref}: {answer.verdict.value} by plan {plan_id}"
    if answer.verdict.value == "removed":
        head += f" ({counted(len(answer.targets) - len(tidy), 'directory')}"
        head += f"; housekeeping: {words})" if tidy else ")"
    elif tidy:
        head += f"; housekeeping inside it: {words}"
    yield head
    removed = [i for i in answer.images if i.verdict is Verdict.REMOVED]
    if len(answer.images) > 1:
        yield f"  {len(removed)} of {len(answer.images)} images removed:"
    yield from (f"  {i.verdict.value} {p(i.name)}: {p(i.reason)}" for i in answer.images)
    yield from (f"  {t.kind.value} {p(t.path)}: {p(t.reason)}" for t in answer.targets)
    for k in answer.kept:
        refs = f" (for {', '.join(p(r) for r in k.refs)})" if k.refs else ""
        yield f"  storage keeps {p(k.path)}: {p(k.reason)}{refs}"


def why_json(answer: WhyAnswer, plan: Plan) -> dict[str, object]:
    tidy = set(housekeeping(answer))
    return {
        "plan_id": plan.plan_id,
        "ref": answer.ref,
        "verdict": answer.verdict.value,
        "images": [
            {"name": i.name, "verdict": i.verdict.value, "reason": i.reason, "bytes": i.bytes}
            for i in answer.images
        ],
        "nearest": list(answer.nearest),
        "targets": [
            {
                "path": t.path,
                "kind": t.kind.value,
                "reason": t.reason,
                "refs": list(t.refs),
                "housekeeping": t in tidy,
            }
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
        "removed_gone": report.removed_checked
        - len(report.still_served)
        - len(report.pushed_again),
        "still_served": [{"image": f.image, "what": f.what} for f in report.still_served],
        "pushed_again": [{"image": f.image, "what": f.what} for f in report.pushed_again],
        "plan": report.plan_note or None,
    }


def check_report(report: CheckReport, url: str, *, quiet: bool = False) -> str:
    """The result of ``regplan check``: every broken image and every removed thing still
    served on a line of its own, then (unless ``quiet``) what was pushed again and the
    totals."""
    lines = [f"BROKEN {f.image}: {f.what}" for f in report.failures]
    lines += [f"STILL SERVED {f.image}: {f.what}" for f in report.still_served]
    if quiet:
        return "\n".join(lines)
    lines += [f"PUSHED AGAIN {f.image}: {f.what}" for f in report.pushed_again]
    verdict = "all whole" if not report.failures else f"{len(report.failures)} broken"
    lines.append(
        f"Checked {report.images} images ({report.manifests} manifests, {report.blobs} blobs) "
        f"through {url}: {verdict}."
    )
    if report.plan_note:
        lines.append(f"Plan: {report.plan_note}.")
    if report.removed_checked:
        again = len(report.pushed_again)
        gone = report.removed_checked - len(report.still_served) - again
        lines.append(
            f"Of {report.removed_checked} things the plan removed (manifests and blobs, each "
            f"once), {gone} are gone and {len(report.still_served)} still served"
            + (f"; {again} pushed again since the apply (not a stale cache)." if again else ".")
        )
    elif report.plan_note:
        lines.append("What the plan removes was not asked for: it is not applied here.")
    return "\n".join(lines)
