"""regplan why: what a plan does to one image, digest or path, and its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan import workflow
from regplan.cli import cli
from regplan.why import Verdict, why
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
    assert lines[1] == (
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
    assert why(plan, "team/tool:1.0").verdict is Verdict.KEPT  # shares the base layer
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
