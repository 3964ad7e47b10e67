"""Fail closed, round three (#33), in the review and signature layers: nothing named
like an approval hangs a command, and no string from a plan forges a line of ``why``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli

TIMEOUT = 30
"""Seconds a command may take here before it counts as hung (a plan of the demo takes one)."""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def regplan(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, killed (and the test failed) if it hangs."""
    return subprocess.run(
        [sys.executable, "-m", "regplan", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture
def signed(demo_root: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A plan by alice@ops (p.json), her public key, and bob@review's key."""
    for name, comment in (("alice", "alice@ops"), ("bob", "bob@review")):
        assert run("keygen", str(tmp_path / name), "--comment", comment).exit_code == 0
    plan = tmp_path / "p.json"
    made = run(
        "plan",
        "--root",
        str(demo_root),
        "--key",
        str(tmp_path / "alice"),
        "-o",
        str(plan),
        "--image",
        "team/app:v1",
    )
    assert made.exit_code == 0, made.output
    return plan, tmp_path / "alice.pub", tmp_path / "bob"


def test_a_fifo_named_like_an_approval_hangs_nothing(
    signed: tuple[Path, Path, Path], demo_root: Path
) -> None:
    """A FIFO (and a directory) matched by ``PLAN.approval-*.sig`` is never opened for
    a blocking read: show, verify, approve and apply report it as ignored and go on."""
    plan, alice, bob = signed
    fifo = plan.with_name(plan.name + ".approval-fifo.sig")
    os.mkfifo(fifo)
    plan.with_name(plan.name + ".approval-dir.sig").mkdir()
    shown = regplan("show", str(plan), "--trust", str(alice))
    assert shown.returncode == 0, shown.stderr
    ignored = f"IGNORED ? ? (?) at ?, in {fifo.name}: not a regular file (a FIFO): ignored"
    assert ignored in shown.stdout
    # (in this process: a show that hangs has failed above)
    doc = json.loads(run("show", str(plan), "--json").output)
    assert [s["state"] for s in doc["signatures"]] == ["not verified", "ignored", "ignored"]
    assert "| **ignored** |" in run("show", str(plan), "--format", "markdown").output
    approved = regplan("approve", str(plan), "--key", str(bob), "--trust", str(alice))
    assert approved.returncode == 0, approved.stderr
    trust = ("--trust", str(alice), "--trust", f"{bob}.pub")
    verified = regplan("verify", str(plan), *trust, "--require-signatures", "2")
    assert verified.returncode == 0, verified.stderr
    applied = regplan("apply", str(plan), *trust, "--require-signatures", "2")
    assert applied.returncode == 0, applied.stderr
    assert fifo.exists()  # reported, never removed or written
