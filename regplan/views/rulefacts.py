"""What ``verify`` says of an approval rule that held: one line for the terminal, and
the fields ``verify --json`` adds. Pure; every name printable in the line."""

from __future__ import annotations

from regplan.plans.rule import Rule, Signers
from regplan.scan.layout import printable


def rule_line(rule: Rule, signed: Signers) -> str:
    approved = ", ".join(printable(p) for p in signed.approvers) or "nobody"
    return (
        f"It meets the approval rule {printable(rule.file)}: planned by "
        f"{printable(signed.planner)}, approved by {approved}."
    )


def rule_json(rule: Rule | None, signed: Signers | None) -> dict[str, object]:
    """``{"approval_rule": {...}}`` when a rule held, else nothing."""
    if rule is None or signed is None:
        return {}
    return {
        "approval_rule": {
            "file": rule.file,
            "required_approvals": rule.required_approvals,
            "planner": signed.planner,
            "approvers": list(signed.approvers),
        }
    }
