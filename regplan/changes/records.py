"""What the transaction records of one apply: its state and its record (``state.json``).

Every backend keeps the same record, as a file or an object; only where differs.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs
import cattrs

from regplan.errors import ApplyError
from regplan.plans import codec


class State(enum.Enum):
    APPLYING = "applying"
    APPLIED = "applied"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    PARTLY_ROLLED_BACK = "partly-rolled-back"
    """``rollback --only`` restored some images; the rest is still in the quarantine."""
    PURGING = "purging"
    PURGED = "purged"


class Action(enum.Enum):
    APPLY = "apply"
    ROLLBACK = "rollback"
    PURGE = "purge"


@attrs.frozen(kw_only=True)
class Operator:
    """Who ran one step of an apply's life, as the machine it ran on says (the local
    user and host: what the operator's own account shows, not a proof)."""

    action: Action
    user: str
    host: str
    at: str


@attrs.frozen(kw_only=True)
class By:
    """Who a step is by: its operator and, for an apply, the principals of the plan's
    valid signatures by trusted keys (apply signs nothing itself: no key of its own)."""

    operator: Operator
    planner: str = ""
    approvers: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ApplyRecord:
    seq: int
    """Order of the applies in this storage (assigned under the lock)."""
    apply_id: str
    plan_id: str
    state: State
    root: str
    started_at: str
    updated_at: str
    targets: int
    bytes: int
    """Bytes the plan moves into quarantine (0 once rolled back or purged)."""
    note: str = ""
    registry: str = ""
    """How regplan knew the registry could not write when it applied (and rolled back):
    a probe's answer, or the operator's --registry-stopped."""
    superseded: int = 0
    """Tags a rollback left as pushed since the apply: their apply-time version stays in
    the quarantine (purgeable)."""
    only: tuple[str, ...] = ()
    """While a ``rollback --only`` runs (and after it): the references it restores (a
    rollback run again after a kill restores at least these)."""
    planner: str = ""
    """The principal whose key signed the plan as planner ("" in records made before
    regplan recorded it)."""
    approvers: tuple[str, ...] = ()
    """The principals of the valid approvals by trusted keys the apply found, sorted."""
    operators: tuple[Operator, ...] = ()
    """Who ran each step (apply, an apply run again, rollback, purge), in order."""


def stamped(record: ApplyRecord, by: By | None) -> ApplyRecord:
    """The record with one more step's operator (and an apply's signers); as it was when
    ``by`` is None (a caller that says nobody, as the tests of the steps themselves)."""
    if by is None:
        return record
    steps = (*record.operators, by.operator)
    if len(steps) > MAX_OPERATORS:  # an apply killed and run again without end: the first stays
        steps = (steps[0], *steps[1 - MAX_OPERATORS :])
    record = attrs.evolve(record, operators=steps)
    if by.operator.action is Action.APPLY and (by.planner or by.approvers):
        record = attrs.evolve(record, planner=by.planner, approvers=by.approvers)
    return record


MAX_OPERATORS = 64
"""Steps a record keeps (the first and the latest): a record stays a few KiB."""


_converter = codec.make_converter()


def state_bytes(record: ApplyRecord) -> bytes:
    """``state.json`` as written (on a disk or as an object)."""
    return json.dumps(_converter.unstructure(record), indent=2, sort_keys=True).encode() + b"\n"


def parse_state(data: bytes, where: str) -> ApplyRecord:
    """A ``state.json``'s record, or one ApplyError line naming ``where``."""
    try:
        return _converter.structure(json.loads(data), ApplyRecord)
    except (ValueError, TypeError, KeyError, RecursionError, cattrs.BaseValidationError) as e:
        raise ApplyError(f"cannot read {where}: {e}") from None


def who_json(r: ApplyRecord) -> dict[str, Any]:
    """Who planned, approved and ran each step of one apply, as ``history --json`` adds
    it (empty in records made before regplan recorded it)."""
    return {
        "planner": r.planner,
        "approvers": list(r.approvers),
        "operators": [
            {"action": o.action.value, "user": o.user, "host": o.host, "at": o.at}
            for o in r.operators
        ],
    }
