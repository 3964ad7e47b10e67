"""Reading an approval rule file (policy/approvals_file.py): the rule, or every mistake
with its line and column on one line (exit 1)."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from regplan.plans.rule import Rule
from regplan.policy.approvals_file import RuleFileError, read, read_file

GOOD = b"""\
version: 1
required_approvals: 2
planners: [alice@ops]
approvers:
  - bob@review
  - carol@review
  - "*@security"
"""


def test_a_rule_is_read() -> None:
    assert read(GOOD, "r.yml") == Rule(
        required_approvals=2,
        planners=("alice@ops",),
        approvers=("bob@review", "carol@review", "*@security"),
        planner_counts_as_approver=False,
        file="r.yml",
    )


def test_planner_counts_as_approver_is_read() -> None:
    rule = read(GOOD + b"planner_counts_as_approver: true\n", "r.yml")
    assert rule.planner_counts_as_approver


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            GOOD.replace(b"required_approvals: 2", b"required_approvals: two"),
            "r.yml:2:21: required_approvals: 'two' is not of type 'integer'",
        ),
        (
            GOOD.replace(b"required_approvals: 2", b"required_approvals: -1"),
            "r.yml:2:21: required_approvals: -1 is less than the minimum of 0",
        ),
        (
            GOOD.replace(b"required_approvals: 2", b"required_approvals: true"),
            "r.yml:2:21: required_approvals: True is not of type 'integer'",
        ),
        (
            GOOD.replace(b"planners: [alice@ops]", b"planners: []"),
            "r.yml:3:11: planners: [] should be non-empty",
        ),
        (
            GOOD.replace(b"planners: [alice@ops]", b"planners: [alice@ops, 3]"),
            "r.yml:3:23: planners[1]: 3 is not of type 'string'",
        ),
        (
            GOOD + b"planers: [x]\n",
            "r.yml:8:1: the rule: unknown key 'planers' (expected one of: approvers, "
            "planner_counts_as_approver, planners, required_approvals, version)",
        ),
        (
            GOOD.replace(b"version: 1\n", b""),
            "r.yml:1:1: the rule: 'version' is missing",
        ),
        (
            GOOD.replace(b"  - carol@review", b"  - bob@review"),
            "r.yml:6:5: approvers[1]: 'bob@review' listed twice",
        ),
        (
            GOOD.replace(b'  - "*@security"\n', b"").replace(b": 2", b": 3"),
            "r.yml:2:21: required_approvals: 3 but approvers names 2: no plan could ever "
            "be applied",
        ),
        (GOOD + b"version: 1\n", "r.yml:8:1: 'version' given twice"),
        (b"version: [1\n", "r.yml:2:1: not YAML: expected ',' or ']', but got '<stream end>'"),
        (b"", "r.yml: empty; a rule has version: 1, required_approvals, planners and approvers"),
        (b"- 1\n", "r.yml:1:1: the rule: [1] is not of type 'object'"),
        (b"a: &x [1]\nb: *x\n", "r.yml:1:4: anchors and aliases are not allowed"),
        (b"version: 1\x1b[2J\n", "r.yml:1:11: U+001B is not allowed in a rule"),
        (b"\xff", "r.yml: not UTF-8 text (byte 0)"),
    ],
    ids=[
        "not-a-number",
        "negative",
        "boolean",
        "empty-list",
        "not-a-string",
        "unknown-key",
        "missing-key",
        "listed-twice",
        "count-out-of-reach",
        "key-twice",
        "not-yaml",
        "empty",
        "not-a-mapping",
        "alias",
        "control-character",
        "not-utf8",
    ],
)
def test_each_mistake_is_one_line_with_its_line_and_column(text: bytes, error: str) -> None:
    with pytest.raises(RuleFileError) as e:
        read(text, "r.yml")
    assert str(e.value) == error
    assert e.value.exit_code == 1
    assert "\n" not in str(e.value)


def test_every_mistake_is_said_on_the_one_line() -> None:
    text = GOOD.replace(b"version: 1", b"version: 2").replace(b"[alice@ops]", b"alice")
    with pytest.raises(RuleFileError) as e:
        read(text, "r.yml")
    assert str(e.value) == (
        "r.yml:1:10: version: 1 was expected; r.yml:3:11: planners: 'alice' is not of type 'array'"
    )


def test_a_fifo_or_a_huge_file_is_refused_without_waiting(tmp_path: Path) -> None:
    """Read to the cap at the most: /dev/zero is refused, not read without end."""
    with pytest.raises(RuleFileError, match="more than 64 KiB"):
        read_file(Path("/dev/zero"))
    with pytest.raises(RuleFileError, match="No such file"):
        read_file(tmp_path / "missing.yml")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:  # a writer that closes at once: the read sees an empty file
        with fifo.open("wb"):
            os._exit(0)
    with pytest.raises(RuleFileError, match="empty"):
        read_file(fifo)
    os.waitpid(pid, 0)


def test_the_schema_is_a_valid_json_schema_that_accepts_the_example() -> None:
    """What an editor validates against: docs/approvals.md's example passes it."""
    schema = json.loads(
        resources.files("regplan.policy").joinpath("approvals.schema.json").read_text()
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    docs = (Path(__file__).parent.parent / "docs" / "approvals.md").read_text()
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert read(example.encode(), "docs")
