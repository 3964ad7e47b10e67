"""One retention engine (#34): the flags are one table (decide.flags.FLAGS) that the
command line, the plan's record, its argv and the rule they compile to all read; a keep
criterion is in the policy schema, ``Keep`` and the engine's ``CRITERIA`` at once.

Each test here fails when a flag or a criterion is missing from one of its places.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.cli.planning import plan as plan_command
from regplan.cli.policies import SELECTION_FLAGS
from regplan.decide import flags, rules
from regplan.decide.policy import Keep, Rule
from regplan.plans.plan import SelectionRecord
from regplan.policy import load
from tests.helpers import KEY, pem

NOT_RETENTION = {
    "images",
    "untagged",
    "prune",
    "gc",
    "gc_min_age",
    "uploads_older_than",
    "leftovers_older_than",
    "protect",
}
PLAN_SCHEMA = Path(__file__).parents[1] / "plans" / "plan.schema.json"


def _rule_schema() -> dict[str, Any]:
    """The policy schema's rule: its keys."""
    text = resources.files("regplan.policy").joinpath("policy.schema.json").read_text()
    rule: dict[str, Any] = json.loads(text)["$defs"]["rule"]["properties"]
    return rule


def test_every_flag_has_its_field_in_retention_and_in_the_plan_record() -> None:
    """The table, Retention and SelectionRecord name the same fields, in one order."""
    table = [f.field for f in flags.FLAGS]
    assert [a.name for a in attrs.fields(flags.Retention)] == table
    record = [a.name for a in attrs.fields(SelectionRecord) if a.name not in NOT_RETENTION]
    assert record == table


def test_every_plan_record_field_is_in_the_plan_schema() -> None:
    """plans/plan.schema.json describes every field a plan's selection holds."""
    doc = json.loads(PLAN_SCHEMA.read_text())
    selection = doc["properties"]["request"]["properties"]["selection"]
    assert {a.name for a in attrs.fields(SelectionRecord)} <= set(selection["properties"])


def test_every_flag_is_an_option_of_plan_and_refused_beside_a_policy() -> None:
    """plan takes each flag (and its old spelling); beside --policy each is refused."""
    options = {o for p in plan_command.params for o in p.opts}
    for f in flags.FLAGS:
        assert f.option in options
        assert SELECTION_FLAGS[f.field] == f.option
        if f.alias is not None:
            assert f.alias in options
            assert SELECTION_FLAGS[f.alias_param] == f.alias


def test_every_flag_goes_into_the_rule() -> None:
    """Each flag names a field of the rule or of its keep, and the compiled rule holds
    the flag's value there."""
    given: dict[str, Any] = {
        "keep_last": 3,
        "older_than": "9d",
        "match": "v.*",
        "exclude": "v0",
        "keep": "v1",
        "sort_by": "created",
        "allow_empty_repos": True,
        "pulled_within": "30d",
    }
    assert set(given) == {f.field for f in flags.FLAGS}
    made = flags.rule(flags.Retention(**given), "team/*", "v*", "--image team/*:v*")
    assert made.repositories == ("team/*",) and made.tags == ("v*",)
    for f in flags.FLAGS:
        part, _, name = f.rule.rpartition(".")
        holder: Keep | Rule = made.keep if made.keep is not None and part == "keep" else made
        assert name in attrs.fields_dict(type(holder)), f.rule
        assert getattr(holder, name) == given[f.field], f.field


def test_every_keep_criterion_is_in_the_schema_keep_and_the_engine() -> None:
    """A keep criterion is a key of the schema's keep, a Keep field and one of the
    engine's CRITERIA (``by`` says how to rank: no criterion)."""
    keep_schema = _rule_schema()["keep"]["properties"]
    fields = {a.name for a in attrs.fields(Keep)}
    assert set(keep_schema) == fields
    assert {name for name, _ in rules.CRITERIA} == fields - {"by"}


def test_every_rule_field_is_a_policy_key() -> None:
    """What a rule holds, a policy can say (but where it was written and by whom)."""
    fields = {a.name for a in attrs.fields(Rule)} - {"where", "origin"}
    assert fields <= set(_rule_schema())


def test_a_policy_reads_every_keep_key_into_its_field() -> None:
    """Each keep key of the schema is read into the Keep field of its name (load.py has
    no list of them to forget one in)."""
    policy = load.read(
        b"version: 1\nrules:\n  - name: a\n    repositories: ['*']\n    keep:\n"
        b"      newest: 2\n      by: created\n      within: 3d\n      tags: ['v*']\n"
        b"      regex: 'r.*'\n      all: true\n",
        "p.yml",
    )
    keep = policy.rules[0].keep
    assert keep == Keep(newest=2, by="created", within="3d", tags=("v*",), regex="r.*", all=True)
    assert {a.name for a in attrs.fields(Keep)} == set(_rule_schema()["keep"]["properties"])


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "plan.key"
    path.write_bytes(pem(KEY))
    return path


def _plan(root: Path, key: Path, out: Path, *args: str) -> tuple[int, str, str, dict[str, Any]]:
    r = CliRunner().invoke(
        cli,
        ["plan", "--root", str(root), "--key", str(key), "--signer", "t", "-o", str(out), *args],
    )
    doc: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return r.exit_code, r.stdout, r.stderr, doc


def test_exclude_is_the_old_spelling_of_exclude_tags(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    """--exclude decides as --exclude-tags, says it is deprecated on stderr, and the plan
    records the same selection (and the flag by its name in argv)."""
    sel = ("--image", "team/*", "--keep-last", "0")
    code, _, err, old = _plan(demo_root, key, tmp_path / "a.json", *sel, "--exclude", "v2")
    assert code == 0
    assert "Note: --exclude is deprecated: --exclude-tags says the same" in err
    code, _, err, new = _plan(demo_root, key, tmp_path / "b.json", *sel, "--exclude-tags", "v2")
    assert code == 0 and "deprecated" not in err
    for part in ("targets", "kept", "images"):
        assert old[part] == new[part]
    assert old["request"]["selection"]["exclude"] == "v2"
    assert old["request"]["argv"] == new["request"]["argv"]
    assert "--exclude-tags=v2" in new["request"]["argv"]


def test_exclude_and_exclude_tags_together_are_a_usage_error(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    args = ("--image", "team/*", "--exclude", "v1", "--exclude-tags", "v2")
    code, out, err, _ = _plan(demo_root, key, tmp_path / "p.json", *args)
    assert code == 64
    assert "give --exclude-tags once (--exclude is its old name)" in out + err


def test_exclude_beside_a_policy_is_refused_by_its_name(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "p.yml"
    policy.write_text(
        "version: 1\nrules:\n  - name: a\n    repositories: ['*']\n    untagged: 1d\n"
    )
    code, out, err, _ = _plan(
        demo_root, key, tmp_path / "p.json", "--policy", str(policy), "--exclude", "v1"
    )
    assert code == 64
    assert "put --exclude in the policy file" in out + err


def test_a_policy_exclude_tags_regex_decides_as_the_flag(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    """exclude_tags_regex in a policy leaves the same tags out as --exclude-tags: the
    same tags go."""
    policy = tmp_path / "p.yml"
    policy.write_text(
        "version: 1\nrules:\n  - name: a\n    repositories: ['team/app']\n"
        "    exclude_tags_regex: 'v1|latest'\n    keep:\n      newest: 0\n"
        "    allow_empty: true\n"
    )
    code, _, _, by_policy = _plan(demo_root, key, tmp_path / "a.json", "--policy", str(policy))
    assert code == 0
    flags_args = ("--image", "team/app", "--exclude-tags", "v1|latest", "--keep-last", "0")
    code, _, _, by_flags = _plan(demo_root, key, tmp_path / "b.json", *flags_args)
    assert code == 0

    def gone(doc: dict[str, Any]) -> set[str]:
        return {i["tag"] for i in doc["images"] if i["verdict"] == "removed" and i["tag"]}

    assert gone(by_policy) == gone(by_flags) == {"v2"}
