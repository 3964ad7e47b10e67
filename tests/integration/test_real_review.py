"""The review an operator approves (#20), on images pushed through skopeo into the real
registry (a multi-arch index, cosign-signed images, re-pushed tags), with the issue's
request: `--image '*' --keep-last 1 --keep 'v\\d+' --untagged '*' --gc --prune`. Each
numbered point of the issue is checked as fixed, then the reviewed plan is applied
with two signatures under the write guard, kept images pull, and it is rolled back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regplan.demo.samples import DemoImages
from tests.helpers import docker_hashes
from tests.integration.realreg import RealRegistry, Serve, all_refs, copy_of


def regplan(*args: str, code: int = 0, stopped: bool = False) -> str:
    """Run regplan as an operator does (no REGPLAN_REGISTRY_STOPPED unless ``stopped``);
    its stdout, once its exit code is ``code``."""
    env = {k: v for k, v in os.environ.items() if k != "REGPLAN_REGISTRY_STOPPED"}
    if stopped:
        env["REGPLAN_REGISTRY_STOPPED"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "regplan", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == code, (args, done.returncode, done.stdout[-2000:], done.stderr)
    return done.stdout + done.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def reviewed(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> tuple[Path, RealRegistry, Path, Path, Path]:
    """The pushed registry (running), alice's plan, and bob's key."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    alice, bob = tmp_path / "alice.key", tmp_path / "bob.key"
    regplan("keygen", str(alice), "--comment", "alice@ops")
    regplan("keygen", str(bob), "--comment", "bob@review")
    plan = tmp_path / "cleanup.plan.json"
    request = ["--image", "*", "--keep-last", "1", "--keep", r"v\d+", "--untagged", "*", "--gc"]
    out = regplan(
        "plan", "--root", str(root), "--key", str(alice), "-o", str(plan), *request, "--prune",
        "--detailed-exitcode", code=2,
    )  # fmt: skip
    assert "directories to remove" in out
    return root, reg, plan, alice, bob


def test_the_review_shows_what_stays_and_why(
    reviewed: tuple[Path, RealRegistry, Path, Path, Path],
) -> None:
    """1, 9, 10: every view in image terms, kept images with their rules; storage words."""
    _, _, plan, alice, _ = reviewed
    text = regplan("show", str(plan), "--trust", f"{alice}.pub")
    assert "+ latest" in text and "rank 1 of keep-last 1 by push time" in text
    assert "matches --keep v\\d+" in text
    assert "v1 (+ attestation, signature)" in text  # signatures folded into their image
    assert "empty folders" in text and "empty_dir" not in text and "(s)" not in text
    md = regplan("show", str(plan), "--format", "markdown")
    assert "| `team/app` | `latest` | kept |" in md
    html = regplan("show", str(plan), "--format", "html")
    assert '<tr class="kept">' in html and "rank 1 of keep-last 1" in html
    doc = json.loads(regplan("show", str(plan), "--json"))
    assert doc["format"] == "regplan.review"
    kept = {i["name"] for r in doc["repositories"] for i in r["kept"]}
    assert {"team/app:latest", "team/app:v1", "team/tool:1.0"} <= kept


def test_why_is_strict(reviewed: tuple[Path, RealRegistry, Path, Path, Path]) -> None:
    """2: a typo is exit 8 with the nearest names; a repository that loses images is 7."""
    _, _, plan, _, _ = reviewed
    assert "nearest: team/app:latest" in regplan("why", str(plan), "team/app:lates", code=8)
    assert "team/app" in regplan("why", str(plan), "team/ap", code=8)
    summary = regplan("why", str(plan), "team/app", code=7)
    assert "kept team/app:latest: rank 1 of keep-last 1 by push time" in summary
    assert "rank 1 of keep-last 1" in regplan("why", str(plan), "team/app:latest")


def test_signatures_are_checked_and_approval_keeps_the_pinned_bytes(
    reviewed: tuple[Path, RealRegistry, Path, Path, Path],
) -> None:
    """3, 4, 5, 12: NOT VERIFIED without --trust; approve needs --trust; the plan's
    SHA-256 stays; the signer is the key's name; apply refuses a registry nobody said
    cannot write, and probes the one named; after apply kept images pull; rollback."""
    root, reg, plan, alice, bob = reviewed
    assert "NOT VERIFIED planner alice@ops" in regplan("show", str(plan))
    pinned = sha256(plan)
    assert f"SHA-256 `{pinned}`" in regplan("show", str(plan), "--format", "markdown")
    regplan("approve", str(plan), "--key", str(bob), code=3)
    regplan("approve", str(plan), "--key", str(bob), "--trust", f"{alice}.pub")
    assert sha256(plan) == pinned
    keys = ["--trust", f"{alice}.pub", "--trust", f"{bob}.pub"]
    trust = [*keys, "--require-signatures", "2"]
    shown = regplan("show", str(plan), *keys)
    assert "VALID planner alice@ops" in shown and "VALID approver bob@review" in shown

    before = docker_hashes(root)
    refs = all_refs(root)
    refused = regplan("apply", str(plan), *trust, code=6)
    assert "--registry-stopped" in refused and docker_hashes(root) == before
    regplan("apply", str(plan), *trust, "--registry-url", reg.url, code=6)  # it accepts writes
    reg.stop()  # nothing answers: no proof by itself (#32.4), so the operator says it
    applied = json.loads(
        regplan("apply", str(plan), *trust, "--registry-url", reg.url, "--json", stopped=True)
    )
    reg.start()
    kept = all_refs(root)
    assert kept < refs and all(reg.pull(ref) for ref in sorted(kept))
    assert not any(reg.pull(ref) for ref in sorted(refs - kept))
    reg.stop()
    regplan("rollback", applied["apply_id"], "--root", str(root), stopped=True)
    reg.start()
    assert docker_hashes(root) == before
    [record] = json.loads(regplan("history", "--root", str(root), "--json"))
    assert record["registry"].startswith(f"probed {reg.url}: stopped")
    assert record["registry"].endswith(
        "; rollback: the operator said the registry is stopped (--registry-stopped)"
    )


def test_the_ticket_is_a_runbook(reviewed: tuple[Path, RealRegistry, Path, Path, Path]) -> None:
    """8: the real root and plan file in every command, the backout and check steps."""
    root, _, plan, _, _ = reviewed
    md = regplan("show", str(plan), "--format", "markdown")
    for step in (
        f"regplan verify {plan} --trust TRUST --require-signatures 2 --root {root}",
        f"regplan check --registry-url URL --root {root} --plan {plan}",
        f"regplan history --root {root}",
        f"regplan rollback APPLY_ID --root {root} --registry-url URL",
        f"regplan purge APPLY_ID --root {root}",
    ):
        assert step in md


def test_exit_codes_never_collide_and_a_closed_pipe_is_quiet(
    reviewed: tuple[Path, RealRegistry, Path, Path, Path], tmp_path: Path
) -> None:
    """6, 13."""
    root, _, plan, alice, _ = reviewed
    usage = regplan(
        "plan", "--root", str(root), "--key", str(alice), "--keep-last", "3",
        "--detailed-exitcode", code=64,
    )  # fmt: skip
    assert "retention rules apply to the tags of --image repositories" in usage
    proc = subprocess.Popen(
        [sys.executable, "-m", "regplan", "show", str(plan), "--targets"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.stderr.read() == b""
    proc.wait(timeout=60)
