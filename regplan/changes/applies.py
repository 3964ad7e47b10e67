"""What each apply keeps in the storage's ``regplan-state/``, the same on every store.

``applies/<apply_id>/`` holds ``state.json`` (the record, replaced at every step),
``plan.json`` (the verified plan's bytes, as read), ``plan.body.parquet`` (its pinned
Parquet body, for a plan that has one) and ``journal`` (journal.py);
``quarantine/<apply_id>/`` holds a slot per moved target (seam.slot) and
``INDEX.tsv``, naming each slot's original path for people browsing it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Iterator
from typing import IO, Any

from regplan.changes.recheck import Recheck
from regplan.changes.records import ApplyRecord, parse_state, state_bytes
from regplan.errors import ApplyError
from regplan.plans.plan import TargetKind
from regplan.plans.planfile import PlanStream
from regplan.scan import fingerprint
from regplan.storage.seam import Store

INDEX = "INDEX.tsv"
"""In each quarantine: which slot holds which original path (for people browsing it)."""

RECHECK_LIMIT = 1 << 30
"""The skipped targets of one apply: a few hundred bytes each."""

STATE_LIMIT = 1 << 20
"""A state record is a few hundred bytes: anything larger is not one regplan wrote."""


def state(apply_id: str) -> str:
    return f"applies/{apply_id}/state.json"


def plan(apply_id: str) -> str:
    return f"applies/{apply_id}/plan.json"


def plan_body(apply_id: str) -> str:
    """The Parquet body ``plan.json`` pins, when it pins one (plans.body)."""
    return f"applies/{apply_id}/plan.body.parquet"


def quarantine(apply_id: str) -> str:
    return f"quarantine/{apply_id}"


def decided(apply_id: str) -> str:
    return f"applies/{apply_id}/recheck.json"


def index(apply_id: str) -> str:
    return f"quarantine/{apply_id}/{INDEX}"


def records(store: Store) -> list[ApplyRecord]:
    """Every apply recorded, oldest first (one killed before its first record is not)."""
    found = []
    for apply_id in store.names("applies/"):
        try:
            data = store.read(state(apply_id), STATE_LIMIT)
        except FileNotFoundError:
            continue
        found.append(parse_state(data, store.url(state(apply_id))))
    return sorted(found, key=lambda r: r.seq)


def load(store: Store, apply_id: str) -> ApplyRecord:
    """One apply's record; ApplyError naming the known ones when there is none."""
    try:
        data = store.read(state(apply_id), STATE_LIMIT)
    except FileNotFoundError:
        known = ", ".join(r.apply_id for r in records(store)) or "none"
        raise ApplyError(f"no apply {apply_id} in {store.url('')} (applies: {known})") from None
    return parse_state(data, store.url(state(apply_id)))


def save(store: Store, record: ApplyRecord) -> None:
    """Replace one apply's state, durably."""
    store.write(state(record.apply_id), [state_bytes(record)])


@contextlib.contextmanager
def began(store: Store, apply_id: str) -> Iterator[PlanStream]:
    """The plan an apply began with, as the store keeps it."""
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(store.reader(plan(apply_id)))
        except FileNotFoundError:
            raise ApplyError(f"apply {apply_id} has no plan.json; nothing was changed") from None
        try:
            body: IO[bytes] | None = stack.enter_context(store.reader(plan_body(apply_id)))
        except FileNotFoundError:
            body = None  # a plan with its lists in the JSON (or one whose body is lost: it says)
        yield stack.enter_context(PlanStream.of_file(f, store.url(plan(apply_id)), body))


def keep_recheck(store: Store, apply_id: str, found: Recheck, *, again: bool = False) -> None:
    """What the apply decided to move (a resumed apply skips at least the same;
    ``again``: what a resumed apply decided, replacing it)."""
    raw = {
        "after": _digest_json(found.after),
        "before": _digest_json(found.before) if found.before is not None else None,
        "skipped": [list(s) for s in found.skipped],
        "bytes": found.bytes,
    }
    store.write(decided(apply_id), [json.dumps(raw, sort_keys=True).encode()], new=not again)


def read_recheck(store: Store, apply_id: str) -> Recheck | None:
    """What the apply decided to move, or None for an apply of the plan as planned."""
    try:
        data = store.read(decided(apply_id), RECHECK_LIMIT)
    except FileNotFoundError:
        return None
    try:
        raw = json.loads(data)
        after = _digest_of(raw["after"])
        before = None if raw["before"] is None else _digest_of(raw["before"])
        skipped = tuple((int(i), str(p), str(w)) for i, p, w in raw["skipped"])
        return Recheck(skipped, after, int(raw["bytes"]), before)
    except (ValueError, TypeError, KeyError, RecursionError):
        raise ApplyError(
            f"cannot read {store.url(decided(apply_id))}: not what regplan wrote (tampered "
            "with?); nothing was moved"
        ) from None


def _digest_json(d: fingerprint.TreeDigest) -> dict[str, object]:
    return {"digest": d.digest, "entries": d.entries, "parts": dict(d.parts)}


def _digest_of(raw: dict[str, Any]) -> fingerprint.TreeDigest:
    d = fingerprint.TreeDigest.of_parts(dict(raw["parts"]), int(raw["entries"]))
    if d.digest != raw["digest"]:
        raise ValueError("its parts do not make its digest")
    return d


def begin(store: Store, stream: PlanStream, record: ApplyRecord) -> None:
    """Keep the verified plan (its body first), the first state and the quarantine's index."""
    if stream.body is not None:
        store.write(plan_body(record.apply_id), stream.body.copy(), new=True)
    store.write(plan(record.apply_id), stream.copy(), new=True)
    save(store, record)
    store.write(  # line by line: as one string it was 170 MiB at 516,000 targets
        index(record.apply_id),
        itertools.chain(
            (b"slot\tkind\tpath\n",),
            (
                f"{i:07d}\t{t.kind.value}\t{t.path}\n".encode()
                for i, t in enumerate(stream.targets())
                if t.kind != TargetKind.EMPTY_DIR
            ),
        ),
        new=True,
    )
