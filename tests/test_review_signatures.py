"""Signatures a reviewer can trust (#20): shown NOT VERIFIED unless checked against
--trust, then valid or INVALID with the key's own name; approvals live beside the
plan, so the bytes a ticket pinned never change; the signer is the key's name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from click.testing import CliRunner, Result

from regplan.cli import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_signer_is_the_keys_name(alice_plan: tuple[Path, Path, Path]) -> None:
    plan, _, _ = alice_plan
    [sig] = json.loads(plan.read_text())["signatures"]
    assert sig["signer"] == "alice@ops"


def test_views_say_not_verified_without_trust(alice_plan: tuple[Path, Path, Path]) -> None:
    plan, _, _ = alice_plan
    assert "NOT VERIFIED" in run("show", str(plan)).output
    md = run("show", str(plan), "--format", "markdown").output
    assert "| **not verified** | `planner` | `alice@ops` |" in md
    doc = json.loads(run("show", str(plan), "--json").output)
    assert [s["state"] for s in doc["signatures"]] == ["not verified"]


def test_an_edited_plan_shows_invalid_and_cannot_be_approved(
    alice_plan: tuple[Path, Path, Path],
) -> None:
    plan, alice, bob = alice_plan
    doc = json.loads(plan.read_text())
    doc["root"] = "/elsewhere"
    plan.write_text(json.dumps(doc))
    shown = run("show", str(plan), "--trust", str(alice)).output
    assert "INVALID planner alice@ops" in shown
    r = run("approve", str(plan), "--key", str(bob), "--trust", str(alice))
    assert r.exit_code == 3 and "does not match" in r.output
    assert not list(plan.parent.glob("p.json.approval-*"))


def test_approve_without_trust_refuses(alice_plan: tuple[Path, Path, Path]) -> None:
    plan, _, bob = alice_plan
    r = run("approve", str(plan), "--key", str(bob))
    assert r.exit_code == 3 and "--trust" in r.output


def test_approvals_never_change_the_pinned_bytes(alice_plan: tuple[Path, Path, Path]) -> None:
    """sha256sum of the plan is the same before and after approving; show, verify and
    apply find the approval beside it without extra flags."""
    plan, alice, bob = alice_plan
    pinned = sha256(plan)
    md = run("show", str(plan), "--format", "markdown").output
    assert f"SHA-256 `{pinned}`" in md
    a = run("approve", str(plan), "--key", str(bob), "--trust", str(alice))
    assert a.exit_code == 0, a.output
    assert sha256(plan) == pinned
    trust = ["--trust", str(alice), "--trust", f"{bob}.pub"]
    shown = run("show", str(plan), *trust).output
    assert "VALID planner alice@ops" in shown and "VALID approver bob@review" in shown
    assert "2 valid" in shown
    v = run("verify", str(plan), *trust, "--require-signatures", "2")
    assert v.exit_code == 0, v.output
    applied = run("apply", str(plan), *trust, "--require-signatures", "2", "--registry-stopped")
    assert applied.exit_code == 0, applied.output
    assert sha256(plan) == pinned


def test_a_tampered_approval_fails_verification(alice_plan: tuple[Path, Path, Path]) -> None:
    plan, alice, bob = alice_plan
    assert run("approve", str(plan), "--key", str(bob), "--trust", str(alice)).exit_code == 0
    [approval] = plan.parent.glob("p.json.approval-*.sig")
    doc = json.loads(approval.read_text())
    doc["signature"]["signer"] = "mallory"
    approval.write_text(json.dumps(doc))
    v = run("verify", str(plan), "--trust", str(alice), "--trust", f"{bob}.pub")
    assert v.exit_code == 3 and approval.name in v.output


def test_keygen_refuses_a_comment_that_would_break_the_key_line(tmp_path: Path) -> None:
    r = run("keygen", str(tmp_path / "k"), "--comment", "bob\nregplan-ed25519 AAAA evil")
    assert r.exit_code == 1 and not (tmp_path / "k").exists()
