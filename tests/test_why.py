"""regplan why: what a plan does to one image, digest or path, and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner, Result

from regplan import workflow
from regplan.cli import cli
from regplan.decide.flags import Retention
from regplan.views.why import Verdict, why
from tests.helpers import make_plan, selection


@pytest.fixture
def plan_file(demo_root: Path, tmp_path: Path) -> Path:
    """team/signed:v1 (with its signature and attestation) and old/repo go."""
    path = tmp_path / "p.json"
    workflow.write_plan(make_plan(demo_root, selection(("team/signed:v1", "old/repo"))), path)
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["why", *args])


def test_a_removed_tag_lists_what_follows_it_and_exits_7(plan_file: Path) -> None:
    result = run(str(plan_file), "team/signed:v1")
    assert result.exit_code == 7
    lines = result.output.splitlines()
    assert lines[0].startswith("team/signed:v1: removed by plan ")
    assert lines[1] == "  removed team/signed:v1: requested: --image team/signed:v1"
    assert lines[2] == (
        "  tag repositories/team/signed/_manifests/tags/v1: requested: --image team/signed:v1"
    )
    assert any(".sig: signature of team/signed@" in line for line in lines)
    assert any(line.startswith("  blob ") for line in lines)


def test_an_image_of_a_removed_repository(plan_file: Path) -> None:
    answer = why(workflow.load_plan(plan_file), "old/repo:2020")
    assert answer.verdict is Verdict.REMOVED
    assert answer.targets[0].path == "repositories/old/repo"


def test_kept_because_shared_and_untouched(plan_file: Path) -> None:
    plan = workflow.load_plan(plan_file)
    kept = why(plan, "team/signed:v2")
    assert kept.verdict is Verdict.KEPT
    assert any("still used by revisions of team/signed that stay" in k.reason for k in kept.kept)
    shares = why(plan, "team/tool:1.0")  # no rule selects team/tool; it shares a base layer
    assert shares.verdict is Verdict.UNTOUCHED and shares.kept
    assert why(plan, "team/app/cache:stable").verdict is Verdict.UNTOUCHED
    assert run(str(plan_file), "team/app/cache:stable").exit_code == 0


def test_a_path_inside_a_removed_folder_and_a_bare_digest(plan_file: Path) -> None:
    plan = workflow.load_plan(plan_file)
    inside = "repositories/old/repo/_manifests/tags/2019/current/link"
    assert why(plan, inside).targets[0].path == "repositories/old/repo"
    revision = next(t for t in plan.targets if t.kind.value == "revision")
    digest = "sha256:" + revision.path.rsplit("/", 1)[1]
    assert why(plan, digest).verdict is Verdict.REMOVED


def test_json_is_only_json(plan_file: Path) -> None:
    result = run(str(plan_file), "old/repo:2019", "--json")
    assert result.exit_code == 7
    doc = json.loads(result.output)
    assert doc["verdict"] == "removed" and doc["targets"][0]["kind"] == "repository"


def test_a_ref_that_is_none_of_the_forms_is_a_usage_error(plan_file: Path) -> None:
    result = run(str(plan_file), "team/app@sha256:nothex")
    assert result.exit_code == 64


def test_a_name_not_in_the_registry_exits_8_with_the_nearest(plan_file: Path) -> None:
    """A CI guard `regplan why PLAN prod/api:stable || exit 1` fails on a typo."""
    for ref, near in (
        ("team/signd:v2", "team/signed"),
        ("team/signed:v3", "team/signed:v2"),
        ("nosuch/repo:x", "old/repo"),
        ("team/sigend", "team/signed"),
    ):
        result = run(str(plan_file), ref)
        assert result.exit_code == 8, (ref, result.output)
        assert "not in the registry when plan" in result.output and near in result.output
    doc = json.loads(run(str(plan_file), "team/signed:v3", "--json").output)
    assert doc["verdict"] == "not found" and doc["nearest"] == ["team/signed:v2", "team/signed:v1"]


def test_a_repository_that_loses_a_tag_is_removed_with_its_summary(plan_file: Path) -> None:
    result = run(str(plan_file), "team/signed")
    assert result.exit_code == 7
    assert "3 of 5 images removed:" in result.output  # v1, its signature and attestation
    assert "removed team/signed:v1: requested: --image team/signed:v1" in result.output
    assert "kept team/signed:v2: not matched by --image team/signed:v1" in result.output
    assert run(str(plan_file), "repositories/team/signed").exit_code == 7


def test_a_kept_tag_gets_its_rule_not_a_layer_link(demo_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    sel = selection(("team/app",))
    plan = make_plan(demo_root, attrs.evolve(sel, retention=Retention(keep_last=1)))
    workflow.write_plan(plan, path)
    newest = why(workflow.load_plan(path), "team/app:latest")
    assert newest.verdict is Verdict.KEPT
    assert newest.images[0].reason == "rank 1 of keep-last 1 by push time"


def test_a_folder_that_holds_targets_is_touched(demo_root: Path, tmp_path: Path) -> None:
    """#21.5: a path or repository with targets inside it is not "untouched"."""
    path = tmp_path / "u.json"
    workflow.write_plan(make_plan(demo_root, selection(untagged=("team/app",))), path)
    for ref in ("team/app", "repositories/team/app", "repositories/team/app/_manifests"):
        assert run(str(path), ref).exit_code == 7, ref
    assert run(str(path), "team/app/cache").exit_code == 0  # nested, untouched
