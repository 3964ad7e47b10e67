"""What the transaction records of one apply: its state and its record (``state.json``).

Every backend keeps the same record, as a file or an object; only where differs.
"""

from __future__ import annotations

import enum
import json

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
