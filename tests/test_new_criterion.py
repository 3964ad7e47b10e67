"""What a new keep criterion costs (#34): a hypothetical ``keep.digest_in`` (tags pointing
at one of the listed digests are kept), added to a copy of regplan, touches three files:
the policy schema, ``Keep`` and the engine's ``CRITERIA``. The copy then reads a policy
that uses it and decides by it; the table tests pass on it; leave any one of the three
edits out and they fail.

(A criterion the command line also takes adds a row to ``decide.flags.FLAGS`` with its
``Retention`` field, and its ``SelectionRecord`` field with ``plans/plan.schema.json``,
since the plan file records it.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parents[1]

EDITS: dict[str, tuple[str, str]] = {
    "regplan/decide/policy.py": (
        "    all: bool = False\n",
        "    digest_in: tuple[str, ...] = ()\n    all: bool = False\n",
    ),
    "regplan/decide/rules.py": (
        '    ("regex", _regex),\n)',
        '    ("regex", _regex),\n    ("digest_in", lambda k, f: str(f.tag.current) '
        "if str(f.tag.current) in k.digest_in else None),\n)",
    ),
    "regplan/policy/policy.schema.json": (
        '"all": {"const": true}',
        '"all": {"const": true}, "digest_in": {"type": "array", "items": {"type": "string"}}',
    ),
}
"""The whole change: file -> (text there now, what it becomes)."""

USE = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
from regplan.decide.selection import Selection, resolve
from regplan.demo.samples import build_demo
from regplan.policy import load
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage

root = Path(sys.argv[1])
build_demo(root)
inv = scan(FsStorage.locate(root))
v1 = str(inv.repositories["team/app"].tags["v1"].current)
policy = load.read(
    f"version: 1\\nrules:\\n  - name: a\\n    repositories: [team/app]\\n"
    f"    keep:\\n      newest: 0\\n      digest_in: ['{v1}']\\n".encode(),
    "p.yml",
)
res = resolve(Selection(policy=policy), inv, datetime(2026, 2, 1, tzinfo=UTC))
print(json.dumps({"gone": sorted(t for _, t in res.tags),
                  "v1": res.tag_notes[("team/app", "v1")]}))
"""


def _copy(tmp: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """regplan and its tests copied, with ``edits`` made (each must find its text)."""
    copy = tmp / "copy"
    shutil.copytree(HERE / "regplan", copy / "regplan", ignore=shutil.ignore_patterns("__py*"))
    (copy / "tests").mkdir()
    for name in ("__init__.py", "helpers.py", "test_retention_table.py"):
        shutil.copy(HERE / "tests" / name, copy / "tests" / name)
    for rel, (old, new) in edits.items():
        path = copy / rel
        text = path.read_text()
        assert text.count(old) == 1, f"{rel} changed: the experiment's anchor is gone"
        path.write_text(text.replace(old, new))
    return copy


def _python(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    return subprocess.run(
        [sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, check=False
    )


TABLE_TESTS = """
import json
from tests import test_retention_table as t
failed = []
for name in dir(t):
    if name.startswith("test_") and ("criterion" in name or "keep_key" in name
                                     or "rule_field" in name):
        try:
            getattr(t, name)()
        except AssertionError:
            failed.append(name)
print(json.dumps(failed))
"""


def _table_tests(copy: Path) -> list[str]:
    """The table tests of a keep criterion, run on ``copy``: those that fail."""
    ran = _python(copy, "-c", TABLE_TESTS)
    assert ran.returncode == 0, ran.stderr[-2000:]
    failed: list[str] = json.loads(ran.stdout)
    return failed


def test_a_new_keep_criterion_is_three_files(tmp_path: Path) -> None:
    """With the three edits the copy decides by digest_in, and the table tests pass."""
    assert len(EDITS) == 3
    copy = _copy(tmp_path, EDITS)
    used = _python(copy, "-c", USE, str(tmp_path / "registry"))
    assert used.returncode == 0, used.stderr
    out = json.loads(used.stdout)
    assert out["gone"] == ["v2"]  # latest stays as the newest; v1 by its digest
    assert out["v1"].startswith('policy rule "a" (p.yml:3): matches keep digest_in sha256:')
    assert _table_tests(copy) == []


@pytest.mark.parametrize("left_out", sorted(EDITS))
def test_a_criterion_missing_from_one_place_fails_the_table_tests(
    tmp_path: Path, left_out: str
) -> None:
    """Any one of the three edits left out: the table tests say which place lacks it."""
    copy = _copy(tmp_path, {k: v for k, v in EDITS.items() if k != left_out})
    failed = _table_tests(copy)
    assert "test_every_keep_criterion_is_in_the_schema_keep_and_the_engine" in failed
