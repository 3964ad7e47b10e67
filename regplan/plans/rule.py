"""The approval rule: who may plan, who may approve, and how many distinct approvers an
apply needs (``regplan-approvals.yml``, read by ``regplan.policy.approvals_file``).

Pure: the signatures as checked (``approvals.checked``) in, a decision out. Only a
valid signature by a trusted key counts, and it counts for its principal (the name the
trust file gives the key, else its keyid), never for what the signature claims: two
keys of one principal are one approver. The planner's principal never counts as an
approval unless the rule says ``planner_counts_as_approver``, even when that principal
also wrote an approval file.

A principal matches a pattern as OpenSSH matches principals: ``*`` is any run of
characters, ``?`` one character, everything else itself (case matters).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from regplan.errors import SignatureError
from regplan.plans import allowed
from regplan.plans.signing import Checked, State
from regplan.scan.layout import printable


@attrs.frozen(kw_only=True)
class Rule:
    required_approvals: int
    planners: tuple[str, ...]
    """Patterns of the principals who may plan (sign the plan as planner)."""
    approvers: tuple[str, ...]
    """Patterns of the principals whose approvals count."""
    planner_counts_as_approver: bool = False
    file: str = ""
    """Where the rule was read (named in a refusal)."""


def matches(principal: str, patterns: Iterable[str]) -> bool:
    """Whether ``principal`` matches one of ``patterns`` (``*`` and ``?`` only, as the
    allowed_signers' principals match)."""
    return any(allowed.match(principal, p) for p in patterns)


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def principal(c: Checked) -> str:
    """Who a checked signature is by: its trusted name, else its keyid."""
    return c.name or c.keyid


@attrs.frozen(kw_only=True)
class Signers:
    """The principals of a plan's valid signatures by trusted keys, as history records."""

    planner: str
    """The planner's principal ("" when no valid planner signature)."""
    approvers: tuple[str, ...]
    """Every principal with a valid approval, sorted, each once (the planner's too)."""


def signers(checked: Sequence[Checked]) -> Signers:
    valid = [c for c in checked if c.state is State.VALID]
    planner = next((principal(c) for c in valid if c.role == "planner"), "")
    approvers = sorted({principal(c) for c in valid if c.role == "approver"})
    return Signers(planner=planner, approvers=tuple(approvers))


@attrs.frozen(kw_only=True)
class Decision:
    planner: str
    counted: tuple[str, ...]
    """The approvers that count, sorted."""
    not_counted: tuple[tuple[str, str], ...] = ()
    """(principal, why) of valid approvals that do not count."""
    problem: str = ""
    """Why the plan is refused whatever its approvals (its planner), or ""."""
    missing: int = 0
    """Approvals still needed."""
    candidates: tuple[str, ...] = ()
    """Patterns of who could still approve (the approvers' less those counted)."""

    @property
    def ok(self) -> bool:
        return not self.problem and self.missing == 0


def decide(rule: Rule, checked: Sequence[Checked]) -> Decision:
    """Whether the signatures ``checked`` satisfy ``rule`` (see the module's docstring)."""
    valid = [c for c in checked if c.state is State.VALID]
    planners = sorted({principal(c) for c in valid if c.role == "planner"})
    planner = ", ".join(planners)
    problem = ""
    if not planners:
        problem = "it has no valid planner signature by a trusted key"
    elif not_allowed := [p for p in planners if not matches(p, rule.planners)]:
        problem = f"planned by {_names(not_allowed)}, not among the planners {_list(rule.planners)}"
    approvals = {principal(c) for c in valid if c.role == "approver"}
    own = set() if rule.planner_counts_as_approver else set(planners)
    if rule.planner_counts_as_approver:  # the plan's own signature is one approval
        approvals |= set(planners)
    counted = {p for p in approvals - own if matches(p, rule.approvers)}
    not_counted = dict.fromkeys(approvals & own, "the planner")
    not_counted |= dict.fromkeys(approvals - own - counted, "not among the approvers")
    missing = max(0, rule.required_approvals - len(counted))
    excluded = counted | own
    return Decision(
        planner=planner,
        counted=tuple(sorted(counted)),
        not_counted=tuple(sorted(not_counted.items())),
        problem=problem,
        missing=missing,
        candidates=tuple(p for p in rule.approvers if p not in excluded),
    )


def require(rule: Rule | None, checked: Sequence[Checked], plan_id: str) -> Signers:
    """The plan's signers by principal, once ``rule`` (when there is one) holds for the
    signatures ``checked``; SignatureError (exit 3) with ``refusal``'s line otherwise."""
    if rule is not None:
        decision = decide(rule, checked)
        if not decision.ok:
            raise SignatureError(refusal(rule, decision, plan_id))
    return signers(checked)


def refusal(rule: Rule, decision: Decision, plan_id: str) -> str:
    """One line: why the plan is short of the rule, who signed (by principal) and who is
    missing (how many more, from which set)."""
    where = f" ({printable(rule.file)})" if rule.file else ""
    said = [f"plan {printable(plan_id)} does not meet the approval rule{where}"]
    if decision.problem:
        said.append(decision.problem)
    said.append(f"planned by {_names([decision.planner]) if decision.planner else 'nobody'}")
    approved = _names(decision.counted) if decision.counted else "nobody"
    said.append(f"approved by {approved} ({len(decision.counted)} of {rule.required_approvals})")
    if decision.not_counted:
        said.append(
            "not counted: " + ", ".join(f"{printable(p)} ({w})" for p, w in decision.not_counted)
        )
    if decision.missing:
        more = f"{decision.missing} more approval{'s' if decision.missing > 1 else ''}"
        among = _list(decision.candidates) if decision.candidates else "[nobody left]"
        said.append(f"missing: {more} from {among}")
    return "; ".join(said)


def _names(names: Iterable[str]) -> str:
    return ", ".join(printable(n) for n in names)


def _list(patterns: Iterable[str]) -> str:
    return "[" + ", ".join(printable(p) for p in patterns) + "]"
