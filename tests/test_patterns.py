"""Regular expressions run on RE2 (#33 item 1): a pushed tag cannot make a plan run for
ever, and a pattern RE2 refuses is one line (at its line and column in a policy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.decide import patterns
from regplan.demo.samples import Registry, image
from regplan.errors import PolicyError
from tests.helpers import KEY, pem

EVIL = "(a+)+b"
"""Backtracking tries every way to split the a's before it fails: 2^40 on 40 of them."""
TAG = "a" * 40


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "plan.key"
    path.write_bytes(pem(KEY))
    return path


def _pushed(root: Path) -> Path:
    """A registry with a tag of forty a's (anyone who can push could push it)."""
    reg = Registry.create(root)
    reg.push("team/app", image([{"f": b"1"}]), TAG)
    reg.push("team/app", image([{"f": b"2"}]), "v1")
    return root


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """regplan in a process of its own, so that a hang is a timeout, not a stuck suite."""
    return subprocess.run(
        [sys.executable, "-m", "regplan", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_backtracking_pattern_on_a_long_tag_plans_at_once(tmp_path: Path, key: Path) -> None:
    """--keep (and a policy's keep.regex) on a 40-character tag: the plan is made in
    seconds (Python's re backtracks for days)."""
    root = _pushed(tmp_path / "registry")
    policy = tmp_path / "p.yml"
    policy.write_text(
        "version: 1\nrules:\n  - name: a\n    repositories: ['*']\n"
        f"    tags_regex: '{EVIL}|.*'\n    keep:\n      regex: '{EVIL}'\n"
    )
    common = ("plan", "--root", str(root), "--key", str(key), "--signer", "t", "-q")
    flags = _run(*common, "-o", str(tmp_path / "a.json"), "--image", "*", "--keep", EVIL)
    assert flags.returncode == 0, flags.stderr
    by_policy = _run(*common, "-o", str(tmp_path / "b.json"), "--policy", str(policy))
    assert by_policy.returncode == 0, by_policy.stderr
    check = _run("policy", "check", str(policy), "--root", str(root))
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("flag", "pattern", "why"),
    [
        ("--match", "(?!latest).*", "invalid perl operator: (?!"),
        ("--keep", r"(v)\1", r"invalid escape sequence: \1"),
        ("--exclude-tags", "(?<=x)y", "invalid perl operator: (?<="),
    ],
)
def test_a_pattern_re2_refuses_is_one_line(
    demo_root: Path, key: Path, tmp_path: Path, flag: str, pattern: str, why: str
) -> None:
    """A lookaround or a backreference (which RE2 cannot run in linear time) is refused
    before anything is read, with one line naming the flag and what RE2 says."""
    r = CliRunner().invoke(
        cli,
        [
            *("plan", "--root", str(demo_root), "--key", str(key), "--signer", "t"),
            *("-o", str(tmp_path / "p.json"), "--image", "team/*", flag, pattern),
        ],
    )
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        f"Error: {flag} {pattern!r}: not a regular expression (RE2 refuses it: {why})"
    ]
    assert not (tmp_path / "p.json").exists()


def test_policy_check_places_a_refused_pattern_at_its_line_and_column(tmp_path: Path) -> None:
    """policy check names the pattern's line and column, one line each, and nothing of
    RE2's own logging reaches stderr."""
    policy = tmp_path / "p.yml"
    policy.write_text(
        "version: 1\nrules:\n  - name: a\n    repositories: ['*']\n"
        "    tags_regex: '(?=v).*'\n    keep:\n      regex: '(a)\\1'\n"
    )
    r = _run("policy", "check", str(policy))
    assert r.returncode == PolicyError.exit_code, r.stderr
    assert r.stderr.splitlines() == [
        f"Error: {policy}:5:17: rules[0].tags_regex: '(?=v).*' is not a regular expression "
        "(RE2 refuses it: invalid perl operator: (?=)",
        f"Error: {policy}:7:14: rules[0].keep.regex: '(a)\\\\1' is not a regular expression "
        "(RE2 refuses it: invalid escape sequence: \\1)",
    ]


def test_patterns_match_whole_names_as_before() -> None:
    """What RE2 accepts matches as re's fullmatch did: the whole name, alternatives
    included."""
    cases = [
        ("v[0-9]+", "v12", True),
        ("v[0-9]+", "v12a", False),
        ("latest|v1", "v1", True),
        ("latest|v1", "xv1", False),
        ("release-.*", "release-2.0", True),
        ("[a-z0-9.]+", "1.0", True),
    ]
    for pattern, name, matches in cases:
        assert patterns.whole(pattern, name) is matches, (pattern, name)
