"""The transaction's results and history, as the terminal shows them (pure: records in,
text out); ``--json`` prints ``result_json``."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from regplan.scan.layout import printable
from regplan.views.overview import counted
from regplan.views.render import human_bytes

if TYPE_CHECKING:
    from regplan.apply import ApplyResult, RollbackResult
    from regplan.changes.records import ApplyRecord


def result_json(result: ApplyResult | RollbackResult) -> dict[str, object]:
    """An apply's or rollback's result as ``--json`` prints it (every field, paths as text)."""
    out = {
        k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for k, v in attrs.asdict(result, recurse=False).items()
    }
    if "skipped" in out:  # an apply's: each target that stayed, with why
        out["skipped"] = [{"path": p, "why": why} for p, why in getattr(result, "skipped", ())]
    return out


def applied(r: ApplyResult, advice: str, where: Sequence[str] = ()) -> str:
    """``where``: the storage options the next commands need (``--root``, ``--config``),
    so the printed steps run as printed."""
    verb = "Resumed and finished" if r.resumed else "Applied"
    again = shlex.join(where) if where else ""
    said = f" {again}" if again else ""
    return "\n".join(
        [
            f"{verb} plan {r.plan_id} as {r.apply_id}: moved {counted(r.moved, 'directory')}, "
            f"{human_bytes(r.bytes)} now in quarantine ({printable(r.quarantine)}).",
            *_skipped(r),
            advice,
            f"Undo with: regplan rollback {r.apply_id}{printable(said)}   Free the space "
            f"with: regplan purge {r.apply_id}{printable(said)}",
        ]
    )


def _skipped(r: ApplyResult) -> list[str]:
    """One line: what of the plan stayed, and why (``--json`` lists each)."""
    if not r.skipped:
        return []
    n = len(r.skipped)
    return [
        f"Skipped {n} target{'' if n == 1 else 's'} of the plan ({printable(r.skip_summary)}); "
        "apply --json lists each with why."
    ]


def rolled_back(r: RollbackResult, advice: str) -> str:
    lines = [
        f"Rolled back {r.apply_id}{'' if r.whole else ' in part (--only)'}: "
        f"{counted(r.restored, 'directory')} moved back, "
        f"{r.recreated} pruned {'directory' if r.recreated == 1 else 'directories'} recreated"
        + (", the tree is as before the apply." if r.fingerprint_ok and r.whole else ".")
    ]
    if r.superseded:
        names = ", ".join(printable(p) for p in r.superseded)
        lines.append(
            f"Left as pushed since the apply (their old versions stay in the quarantine; "
            f"purge frees them): {names}"
        )
    if not r.whole:
        lines.append(
            f"The rest stays in the quarantine: regplan rollback {r.apply_id} restores it, "
            f"regplan purge {r.apply_id} frees it."
        )
    return "\n".join([*lines, advice])


def purged(done: Sequence[ApplyRecord]) -> str:
    if not done:
        return "Nothing to purge."
    return "\n".join(f"Purged {r.apply_id} (plan {r.plan_id})." for r in done)


def history(found: Sequence[ApplyRecord]) -> str:
    """The applies as a table, then per apply its note, how the registry was known not
    to write, who planned and approved it, and who ran each step. Every field is made
    printable: a record read from storage drives no terminal."""
    if not found:
        return "No applies recorded.\n"
    rows: list[tuple[str, ...]] = [
        ("APPLY ID", "STATE", "PLAN", "STARTED", "TARGETS", "IN QUARANTINE")
    ]
    rows += [
        (
            *map(printable, (r.apply_id, r.state.value, r.plan_id, r.started_at)),
            str(r.targets),
            human_bytes(r.bytes),
        )
        for r in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    for r in found:
        said = [
            r.note,
            f"registry: {r.registry}" if r.registry else "",
            _signed_by(r),
            "; ".join(f"{o.action.value} by {o.user} on {o.host} at {o.at}" for o in r.operators),
        ]
        lines += [f"  {printable(r.apply_id)}: {printable(s)}" for s in said if s]
    return "\n".join(lines) + "\n"


def _signed_by(r: ApplyRecord) -> str:
    if not r.planner and not r.approvers:
        return ""
    approved = ", ".join(r.approvers) if r.approvers else "nobody"
    return f"planned by {r.planner or 'unknown'}; approved by {approved}"
