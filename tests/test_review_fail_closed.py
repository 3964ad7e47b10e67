"""Fail closed, round three (#33), in the review and signature layers: nothing named
like an approval hangs a command, and no string from a plan forges a line of ``why``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner, Result

from regplan import workflow
from regplan.cli import cli
from tests.helpers import make_plan, selection

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


def test_a_fifo_named_like_an_approval_hangs_nothing(
    alice_plan: tuple[Path, Path, Path], demo_root: Path
) -> None:
    """A FIFO (and a directory) matched by ``PLAN.approval-*.sig`` is never opened for
    a blocking read: show, verify, approve and apply report it as ignored and go on."""
    plan, alice, bob = alice_plan
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


FORGED = "\n  kept team/app:v0: forged\nteam/app:v0: kept by plan x"
"""What a crafted reason or name would print as lines of its own, were it not escaped."""


@pytest.fixture
def crafted(demo_root: Path, tmp_path: Path) -> Path:
    """A plan removing team/app:v1 whose every reason (images, targets, kept) and every
    ref ends with FORGED, as an edited plan file can (why reads it unverified)."""
    plan = make_plan(demo_root, selection(("team/app:v1",)))
    plan = attrs.evolve(
        plan,
        images=tuple(attrs.evolve(i, reason=i.reason + FORGED) for i in plan.images),
        targets=tuple(
            attrs.evolve(t, reason=t.reason + FORGED, refs=(*t.refs, "x" + FORGED))
            for t in plan.targets
        ),
        kept=tuple(
            attrs.evolve(k, reason=k.reason + FORGED, refs=(*k.refs, "x" + FORGED))
            for k in plan.kept
        ),
    )
    path = tmp_path / "crafted.json"
    workflow.write_plan(plan, path)
    return path


@pytest.mark.parametrize("ref", ["team/app:v1", "team/app", "team/app:v2"])
def test_why_never_prints_a_line_a_plan_wrote(crafted: Path, ref: str) -> None:
    """Each field is made printable before the lines are joined: a newline inside a
    reason or a name is shown as ``\\x0a`` on its line, never starts a line."""
    result = run("why", str(crafted), ref)
    assert result.exit_code in (0, 7), result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{ref}: ")
    assert all(line.startswith("  ") for line in lines[1:]), result.output
    assert not any(line.lstrip().startswith("kept team/app:v0") for line in lines)
    assert "\\x0a  kept team/app:v0: forged" in result.output


@pytest.fixture
def pruned(demo_root: Path, tmp_path: Path) -> Path:
    """team/app:v1 goes, and --prune removes every repository's empty _uploads folder."""
    path = tmp_path / "pruned.json"
    workflow.write_plan(make_plan(demo_root, selection(("team/app:v1",), prune=True)), path)
    return path


def test_why_a_repository_is_not_removed_by_its_housekeeping(pruned: Path) -> None:
    """``why PLAN REPO`` answers for the repository's images: an empty folder --prune
    removes inside it is reported, and is no "removed" (exit 7) unless an image goes."""
    tool = run("why", str(pruned), "team/tool")
    assert tool.exit_code == 0, tool.output
    head, *rest = tool.output.splitlines()
    assert head.startswith("team/tool: untouched by plan ")
    assert head.endswith("; housekeeping inside it: 1 empty folder")
    assert "  empty_dir repositories/team/tool/_uploads: --prune: empty directory" in rest
    doc = json.loads(run("why", str(pruned), "team/tool", "--json").output)
    assert doc["verdict"] == "untouched"
    assert [t["housekeeping"] for t in doc["targets"]] == [True]
    app = run("why", str(pruned), "team/app")
    assert app.exit_code == 7
    assert app.output.startswith("team/app: removed by plan ")
    assert "(4 directories; housekeeping: 1 empty folder)" in app.output


def test_why_counts_one_directory_in_the_singular(pruned: Path) -> None:
    """``(1 directory)``, never ``(1 directories)``."""
    result = run("why", str(pruned), "repositories/team/app/_manifests/tags/v1")
    assert result.exit_code == 7
    assert result.output.splitlines()[0].endswith(" (1 directory)")


@pytest.fixture
def untagged(demo_root: Path, tmp_path: Path) -> tuple[Path, str]:
    """team/app's untagged manifests go; one of them, as ``show`` prints it (12 hex)."""
    path = tmp_path / "untagged.json"
    plan = make_plan(demo_root, selection(untagged=("team/app",)))
    workflow.write_plan(plan, path)
    gone = next(i for i in plan.images if i.tag is None and i.verdict.value == "removed")
    assert gone.digest is not None
    return path, gone.digest


@pytest.mark.parametrize("form", ["team/app@{short}", "{short}", "@{short}"])
def test_why_takes_a_digest_prefix_as_show_prints_it(untagged: tuple[Path, str], form: str) -> None:
    """``show`` prints ``@sha256:`` and 12 hex characters: ``why`` takes it (12 or more,
    unique in the plan) and answers for the whole digest."""
    plan, digest = untagged
    result = run("why", str(plan), form.format(short=digest[:19]))
    assert result.exit_code == 7, result.output
    assert digest in result.output.splitlines()[0]


def test_an_ambiguous_or_too_short_digest_prefix_is_a_usage_error(
    untagged: tuple[Path, str],
) -> None:
    """Two digests that share the prefix: exit 64 naming both; fewer than 12: exit 64."""
    path, digest = untagged
    plan = workflow.load_plan(path)
    twins = [f"sha256:{'ab' * 6}{n:052x}" for n in (1, 2)]
    swap = dict(zip([i for i in plan.images if i.tag is None][:2], twins, strict=True))
    images = [attrs.evolve(i, digest=swap[i]) if i in swap else i for i in plan.images]
    crafted = path.with_name("twins.json")
    workflow.write_plan(attrs.evolve(plan, images=tuple(images)), crafted)
    assert sum(i.digest in twins for i in images) == 2
    result = CliRunner().invoke(cli, ["why", str(crafted), "team/app@sha256:" + "ab" * 6])
    assert result.exit_code == 64, result.output
    assert all(t in result.output for t in twins)
    short = CliRunner().invoke(cli, ["why", str(path), digest[:18]])
    assert short.exit_code == 64 and "12" in short.output


@pytest.mark.parametrize("host", ["ghcr.io", "localhost:5000", "registry.example:5000"])
def test_why_strips_a_registry_host_as_protect_does(pruned: Path, host: str) -> None:
    """``why PLAN ghcr.io/team/app:v1`` answers for ``team/app:v1``."""
    result = run("why", str(pruned), f"{host}/team/app:v1")
    assert result.exit_code == 7, result.output
    assert "removed team/app:v1: requested" in result.output


def test_a_fifo_given_as_a_trusted_key_hangs_nothing(alice_plan: tuple[Path, Path, Path]) -> None:
    """``--trust`` of a FIFO (or a key file of gigabytes) is a one-line error, never a
    read that waits for a writer or grows without end."""
    plan, _, _ = alice_plan
    fifo = plan.with_name("team.pub")
    os.mkfifo(fifo)
    shown = regplan("show", str(plan), "--trust", str(fifo))
    assert shown.returncode == 1, shown.stderr
    assert shown.stderr == f"Error: {fifo} is not a regular file (a FIFO)\n"
    huge = plan.with_name("huge.pub")
    with huge.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    big = run("show", str(plan), "--trust", str(huge))
    assert big.exit_code == 1 and "is larger than" in big.output
    key = regplan("approve", str(plan), "--key", str(fifo), "--trust", str(huge))
    assert key.stderr == f"Error: {fifo} is not a regular file (a FIFO)\n"
