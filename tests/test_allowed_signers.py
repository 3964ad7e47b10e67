"""The allowed_signers grammar as ssh-keygen(1) gives it: principals, options, key; each
mistake at its line and column (tests/test_ssh_signatures.py judges against OpenSSH)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from regplan.plans import allowed, sshsig

KEY = (  # a fixed key: the test ids hold it, and every worker must collect the same ids
    Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
)
BLOB = base64.b64decode(KEY.split()[1])


def test_a_plain_line() -> None:
    signer = allowed.parse_line(f"alice@ops,bob@ops {KEY} a comment")
    assert signer == allowed.Signer(principals="alice@ops,bob@ops", blob=BLOB)
    assert signer.allows("bob@ops") and not signer.allows("eve@ops")
    assert signer.for_regplan()


def test_options_are_read() -> None:
    options = 'namespaces="git,regplan-*",valid-after="20260101Z",valid-before="202701011230Z"'
    line = f"*@ops cert-authority,{options} {KEY}"
    signer = allowed.parse_line(line)
    assert signer.cert_authority and signer.namespaces == "git,regplan-*"
    assert signer.valid_after == datetime(2026, 1, 1, tzinfo=UTC)
    assert signer.valid_before == datetime(2027, 1, 1, 12, 30, tzinfo=UTC)
    assert signer.for_regplan() and signer.allows("x@ops")
    assert signer.window_problem(datetime(2025, 6, 1, tzinfo=UTC)).startswith("is valid only from")
    assert signer.window_problem(datetime(2026, 6, 1, tzinfo=UTC)) == ""
    assert "expired on 2027-01-01 12:30:00Z" in signer.window_problem(
        datetime(2028, 1, 1, tzinfo=UTC)
    )


def test_a_quoted_principal_may_hold_spaces() -> None:
    assert allowed.parse_line(f'"bob smith@ops" {KEY}').principals == "bob smith@ops"


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        (f"bob@ops no-touch-required {KEY}", 9, "unknown option 'no-touch-required'"),
        (f"bob@ops namespaces=git {KEY}", 20, "value must be quoted"),
        (f'bob@ops cert-authority="x" {KEY}', 9, "takes no value"),
        (f'bob@ops valid-after="2026" {KEY}', 21, "is not a time"),
        (f'bob@ops namespaces="a",namespaces="b" {KEY}', 24, "given twice"),
        ("bob@ops ssh-ed25519 AAAA!!", 21, "malformed ssh-ed25519 key"),
        ("bob@ops", 8, "not a trusted key line"),
        (f'bob@ops namespaces="a" ssh-foo {KEY.split()[1]}', 24, "unknown key type 'ssh-foo'"),
    ],
)
def test_each_mistake_has_its_column(line: str, column: int, message: str) -> None:
    with pytest.raises(allowed.LineError, match=message) as e:
        allowed.parse_line(line)
    assert e.value.column == column


def test_parse_names_the_file_line_and_column() -> None:
    with pytest.raises(ValueError, match=r"^team/allowed:3:9: unknown option 'x'$"):
        allowed.parse(f"# who\n\nbob@ops x {KEY}\n", "team/allowed")


def test_a_key_line_of_another_type_than_it_says_is_malformed() -> None:
    with pytest.raises(allowed.LineError, match="malformed ssh-rsa key"):
        allowed.parse_line(f"bob@ops ssh-rsa {KEY.split()[1]}")


@given(st.text(alphabet="ab*?!.@", min_size=0, max_size=6), st.text(alphabet="ab.@", max_size=6))
def test_patterns_match_as_openssh_does(pattern: str, name: str) -> None:
    """``*`` any run, ``?`` one character, nothing else special (no fnmatch brackets)."""
    expected = _reference(name, pattern)
    assert allowed.match(name, pattern) is expected


def _reference(name: str, pattern: str) -> bool:
    """OpenSSH's match_pattern, recursively as match.c writes it."""
    if not pattern:
        return not name
    if pattern[0] == "*":
        return any(_reference(name[i:], pattern[1:]) for i in range(len(name) + 1))
    if not name:
        return False
    return (pattern[0] == "?" or pattern[0] == name[0]) and _reference(name[1:], pattern[1:])


def test_a_negated_pattern_wins() -> None:
    assert allowed.match_list("bob@ops", "*@ops")
    assert not allowed.match_list("bob@ops", "!bob@ops,*@ops")
    assert not allowed.match_list("bob@ops", "[b]ob@ops")  # brackets are themselves
    assert sshsig.NAMESPACE == "regplan-plan"
