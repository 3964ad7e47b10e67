"""The approval rule's decision (plans/rule.py) over signatures as checked: who counts,
who does not, and the one line a refusal says."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regplan.errors import SignatureError
from regplan.plans.rule import Rule, decide, matches, principal, refusal, require, signers
from regplan.plans.signing import Checked, State

ALICE, BOB, CAROL, DAVE = "alice@ops", "bob@review", "carol@review", "dave@review"


def sig(name: str, role: str = "approver", state: State = State.VALID, keyid: str = "") -> Checked:
    """A signature as checked: by a trusted key named ``name`` ("" for an untrusted one)."""
    return Checked(
        keyid=keyid or "ed25519:" + hashlib.sha256(f"{name} {role}".encode()).hexdigest()[:32],
        role=role,
        signer=name or "someone",
        signed_at="2026-01-01T00:00:00Z",
        source="plan" if role == "planner" else f"p.json.approval-{name}.sig",
        state=state,
        name=name if state is State.VALID else "",
    )


def two_person(**kw: object) -> Rule:
    fields: dict[str, object] = {
        "required_approvals": 2,
        "planners": (ALICE,),
        "approvers": (BOB, CAROL, DAVE),
        "file": "regplan-approvals.yml",
    }
    return Rule(**{**fields, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("signed", "counted", "missing"),
    [
        ([sig(ALICE, "planner")], (), 2),
        ([sig(ALICE, "planner"), sig(BOB)], (BOB,), 1),
        ([sig(ALICE, "planner"), sig(BOB), sig(CAROL)], (BOB, CAROL), 0),
        ([sig(ALICE, "planner"), sig(BOB), sig(BOB, keyid="ed25519:other")], (BOB,), 1),
        ([sig(ALICE, "planner"), sig(BOB), sig("", state=State.UNTRUSTED)], (BOB,), 1),
        ([sig(ALICE, "planner"), sig(BOB), sig(CAROL, state=State.NOT_VERIFIED)], (BOB,), 1),
        ([sig(ALICE, "planner"), sig(BOB), sig("eve@ops")], (BOB,), 1),
        ([sig(ALICE, "planner"), sig(BOB), sig(ALICE)], (BOB,), 1),
    ],
    ids=[
        "planner-only",
        "one-approval",
        "two-approvals",
        "one-principal-two-keys",
        "untrusted-key",
        "not-verified",
        "not-an-approver",
        "planner-approves-own-plan",
    ],
)
def test_counts_distinct_valid_approvers_by_principal(
    signed: list[Checked], counted: tuple[str, ...], missing: int
) -> None:
    """Only valid approvals by trusted keys count, once per principal, from the approvers."""
    decision = decide(two_person(), signed)
    assert decision.counted == counted
    assert decision.missing == missing
    assert decision.ok is (missing == 0)


def test_the_planner_never_counts_even_when_listed_as_approver() -> None:
    """A principal who planned and is an approver too: its approval file does not count."""
    rule = two_person(planners=(ALICE, BOB))
    decision = decide(rule, [sig(BOB, "planner"), sig(BOB), sig(CAROL)])
    assert decision.counted == (CAROL,)
    assert decision.not_counted == ((BOB, "the planner"),)
    assert decision.candidates == (DAVE,)


def test_planner_counts_as_approver_when_the_rule_says_so() -> None:
    """With planner_counts_as_approver, the planner's own signature is one approval."""
    rule = two_person(planners=(BOB,), planner_counts_as_approver=True)
    assert decide(rule, [sig(BOB, "planner"), sig(CAROL)]).ok
    assert decide(rule, [sig(BOB, "planner")]).missing == 1


def test_a_planner_not_allowed_is_refused_whatever_the_approvals() -> None:
    decision = decide(two_person(), [sig(CAROL, "planner"), sig(BOB), sig(DAVE)])
    assert not decision.ok
    assert decision.problem == "planned by carol@review, not among the planners [alice@ops]"


def test_an_untrusted_planner_is_refused() -> None:
    decision = decide(two_person(), [sig("", "planner", State.UNTRUSTED), sig(BOB), sig(CAROL)])
    assert decision.problem == "it has no valid planner signature by a trusted key"


def test_zero_approvals_needs_only_an_allowed_planner() -> None:
    rule = two_person(required_approvals=0)
    assert decide(rule, [sig(ALICE, "planner")]).ok
    assert not decide(rule, [sig(BOB, "planner")]).ok


def test_the_refusal_names_who_signed_and_who_is_missing() -> None:
    """One line: planned by, approved by (n of N), not counted, and how many more from whom."""
    decision = decide(two_person(), [sig(ALICE, "planner"), sig(BOB), sig(ALICE)])
    assert refusal(two_person(), decision, "P1") == (
        "plan P1 does not meet the approval rule (regplan-approvals.yml); planned by "
        "alice@ops; approved by bob@review (1 of 2); not counted: alice@ops (the planner); "
        "missing: 1 more approval from [carol@review, dave@review]"
    )


def test_require_raises_exit_3_and_returns_the_signers() -> None:
    signed = [sig(ALICE, "planner"), sig(BOB)]
    with pytest.raises(SignatureError, match="missing: 1 more approval") as e:
        require(two_person(), signed, "P1")
    assert e.value.exit_code == 3
    assert require(None, signed, "P1") == signers(signed)
    assert signers(signed).planner == ALICE and signers(signed).approvers == (BOB,)


def test_a_key_without_a_name_is_its_keyid() -> None:
    """A trusted key whose file names nobody counts as its keyid (which a rule may list)."""
    anonymous = Checked(
        keyid="ed25519:0123",
        role="approver",
        signer="claims-bob",
        signed_at="",
        source="f",
        state=State.VALID,
    )
    rule = two_person(required_approvals=1, approvers=("ed25519:0123",))
    assert decide(rule, [sig(ALICE, "planner"), anonymous]).counted == ("ed25519:0123",)


@pytest.mark.parametrize(
    ("principal", "pattern", "matched"),
    [
        ("bob@review", "bob@review", True),
        ("bob@review", "*@review", True),
        ("bob@reviewers", "*@review", False),
        ("bob@review", "bo?@review", True),
        ("Bob@review", "bob@review", False),
        ("bob.x@review", "bob?x@review", True),
        ("a[b]", "a[b]", True),
        ("ab", "a[b]", False),
        ("anything", "*", True),
    ],
)
def test_patterns_are_openssh_style(principal: str, pattern: str, matched: bool) -> None:
    """``*`` and ``?`` only; brackets and dots are themselves; case matters."""
    assert matches(principal, [pattern]) is matched


NAMES = st.sampled_from([ALICE, BOB, CAROL, DAVE, "eve@ops", ""])
STATES = st.sampled_from(list(State))
SIGS = st.builds(
    sig, NAMES, st.sampled_from(["planner", "approver"]), STATES, st.sampled_from(["", "k2"])
)
RULES = st.builds(
    Rule,
    required_approvals=st.integers(0, 4),
    planners=st.lists(NAMES.filter(bool), min_size=1, max_size=3).map(tuple),
    approvers=st.lists(st.sampled_from([BOB, CAROL, DAVE, ALICE, "*@review", "*"]), min_size=1).map(
        lambda xs: tuple(dict.fromkeys(xs))
    ),
    planner_counts_as_approver=st.booleans(),
)


@given(RULES, st.lists(SIGS, max_size=8), SIGS.filter(lambda c: c.state is not State.VALID))
def test_a_signature_that_is_not_valid_changes_nothing(
    rule: Rule, signed: list[Checked], other: Checked
) -> None:
    """An untrusted, invalid, unverified or ignored signature is never counted."""
    assert decide(rule, [*signed, other]) == decide(rule, signed)


@given(RULES, st.lists(SIGS, max_size=8), st.sampled_from([BOB, CAROL, DAVE, "eve@ops"]))
def test_one_more_approval_never_makes_a_plan_fall_short(
    rule: Rule, signed: list[Checked], name: str
) -> None:
    """Monotone: an approval added to a plan that met the rule still meets it."""
    if decide(rule, signed).ok:
        assert decide(rule, [*signed, sig(name)]).ok


@given(RULES, st.lists(SIGS, max_size=8))
def test_counted_are_distinct_valid_approvers_never_the_planner(
    rule: Rule, signed: list[Checked]
) -> None:
    decision = decide(rule, signed)
    valid = {principal(c) for c in signed if c.state is State.VALID}
    planners = {principal(c) for c in signed if c.state is State.VALID and c.role == "planner"}
    assert set(decision.counted) <= valid
    assert all(matches(p, rule.approvers) for p in decision.counted)
    assert decision.missing == max(0, rule.required_approvals - len(decision.counted))
    if not rule.planner_counts_as_approver:
        assert not set(decision.counted) & planners
