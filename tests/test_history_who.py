"""Who did what, as an apply's record keeps it (changes/records.py) and history shows it
(views/results.py): records made before these fields still read, every field is inert
in the terminal, and a record stays small however often a step is run again."""

from __future__ import annotations

import json
import os
import pwd
import socket
from datetime import UTC, datetime

import attrs
import pytest

from regplan.apply import record_json
from regplan.changes import who
from regplan.changes.records import (
    MAX_OPERATORS,
    Action,
    ApplyRecord,
    By,
    Operator,
    State,
    parse_state,
    stamped,
    state_bytes,
)
from regplan.views import results
from tests.test_views_inert import HOSTILE

OLD = {  # a state.json as regplan wrote it before it recorded who
    "apply_id": "20260101T000000Z-0a0b0c0d",
    "bytes": 10,
    "note": "",
    "only": [],
    "plan_id": "20260101T000000Z-1a2b3c4d",
    "registry": "probed http://127.0.0.1:5000: read-only",
    "root": "/srv/registry",
    "seq": 1,
    "started_at": "2026-01-01T00:00:00Z",
    "state": "applied",
    "superseded": 0,
    "targets": 3,
    "updated_at": "2026-01-01T00:00:00Z",
}


def record() -> ApplyRecord:
    return parse_state(json.dumps(OLD).encode(), "state.json")


def op(action: Action, user: str = "olga", host: str = "ops1") -> Operator:
    return Operator(action=action, user=user, host=host, at="2026-01-02T00:00:00Z")


def test_an_old_record_reads_and_shows_nobody() -> None:
    old = record()
    assert (old.planner, old.approvers, old.operators) == ("", (), ())
    assert record_json(old)["operators"] == [] and record_json(old)["planner"] == ""
    text = results.history([old])
    assert "planned by" not in text and " by " not in text.splitlines()[-1]


def test_a_stamped_record_round_trips() -> None:
    by = By(operator=op(Action.APPLY), planner="alice@ops", approvers=("bob@r", "carol@r"))
    r = stamped(stamped(record(), by), By(operator=op(Action.ROLLBACK, "oscar")))
    assert parse_state(state_bytes(r), "x") == r
    assert r.planner == "alice@ops" and r.approvers == ("bob@r", "carol@r")
    assert [o.action for o in r.operators] == [Action.APPLY, Action.ROLLBACK]
    assert stamped(r, None) is r


def test_a_rollback_or_purge_keeps_the_apply_s_signers() -> None:
    """Only an apply says who planned and approved; later steps add their operator."""
    r = stamped(record(), By(operator=op(Action.APPLY), planner="alice@ops", approvers=("b",)))
    r = stamped(r, By(operator=op(Action.PURGE), planner="mallory", approvers=("m",)))
    assert (r.planner, r.approvers) == ("alice@ops", ("b",))


def test_a_step_run_again_without_end_keeps_the_first_and_the_latest() -> None:
    r = record()
    for n in range(MAX_OPERATORS * 3):
        r = stamped(r, By(operator=op(Action.APPLY, f"u{n}")))
    assert len(r.operators) == MAX_OPERATORS
    assert r.operators[0].user == "u0" and r.operators[-1].user == f"u{MAX_OPERATORS * 3 - 1}"


def test_history_is_inert_whatever_the_record_holds() -> None:
    """A state.json edited to carry control characters drives no terminal."""
    hostile = attrs.evolve(
        stamped(
            record(),
            By(operator=op(Action.APPLY, HOSTILE, HOSTILE), planner=HOSTILE, approvers=(HOSTILE,)),
        ),
        apply_id=HOSTILE,
        plan_id=HOSTILE,
        note=HOSTILE,
        registry=HOSTILE,
        started_at=HOSTILE,
    )
    text = results.history([hostile])
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text)
    assert "\u202e" not in text
    assert "\\x1b[2J" in text
    assert json.loads(json.dumps(record_json(hostile)))["planner"] == HOSTILE


def test_the_operator_is_this_process_s_user_and_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "olga")
    found = who.operator(Action.PURGE, datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    assert (found.action, found.user, found.at) == (Action.PURGE, "olga", "2026-03-04T05:06:07Z")
    assert found.host == socket.gethostname()


def test_the_user_falls_back_to_the_account_of_the_uid(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LOGNAME, USER, LNAME or USERNAME: the account's name."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    assert who.local_user() == pwd.getpwuid(os.getuid()).pw_name


def test_the_state_is_in_history_json_order() -> None:
    r = stamped(record(), By(operator=op(Action.APPLY), planner="p", approvers=("a",)))
    out = record_json(r)
    assert out["state"] == State.APPLIED.value
    assert out["operators"] == [
        {"action": "apply", "user": "olga", "host": "ops1", "at": "2026-01-02T00:00:00Z"}
    ]
