"""The nightly recipes of policies/ci (#24): the script they all run plans with the
policy, exits 2 ("changes present") with the review published, 0 when there is
nothing to do, 1 with every mistake of a bad policy; no recipe applies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from regplan.cli import cli
from tests.helpers import write_keys

CI = Path(__file__).parents[1] / "policies" / "ci"
SCRIPT = CI / "nightly-plan.sh"
FITS = """\
version: 1
rules:
  - name: team
    repositories: ["team/*"]
    keep: {newest: 1}
"""


def nightly(root: Path, tmp_path: Path, policy: str) -> subprocess.CompletedProcess[str]:
    key, _ = write_keys(tmp_path)
    (tmp_path / "cleanup.yml").write_text(policy)
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "REGISTRY_DATA_DIR": str(root),
        "REGPLAN_KEY_FILE": str(key),
        "REGPLAN_POLICY": str(tmp_path / "cleanup.yml"),
        "REGPLAN_OUT": str(tmp_path / "out"),
    }
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )


def test_changes_present_exit_2_with_the_review_published(demo_root: Path, tmp_path: Path) -> None:
    r = nightly(demo_root, tmp_path, FITS)
    assert r.returncode == 2, r.stderr
    assert "Changes present" in r.stdout
    out = tmp_path / "out"
    md = (out / "plan.md").read_text()
    assert "## Policy" in md and 'policy rule "team"' in md
    assert (out / "plan.html").read_text().startswith("<!DOCTYPE html>")
    pub = tmp_path / "k.pub"
    v = CliRunner().invoke(cli, ["verify", str(out / "plan.json"), "--trust", str(pub)])
    assert v.exit_code == 0, v.output


def test_nothing_to_do_exit_0(demo_root: Path, tmp_path: Path) -> None:
    r = nightly(demo_root, tmp_path, FITS.replace("{newest: 1}", "{all: true}"))
    assert r.returncode == 0, r.stderr
    assert "Nothing to clean up" in r.stdout
    assert not list((tmp_path / "out").iterdir())


def test_a_bad_policy_exit_1_with_every_mistake(demo_root: Path, tmp_path: Path) -> None:
    r = nightly(demo_root, tmp_path, FITS.replace("keep:", "kep:"))
    assert r.returncode == 1
    assert "cleanup.yml:5:5: rules[0]: unknown key 'kep'" in r.stderr
    assert not (tmp_path / "out" / "plan.json").exists()


def _commands(doc: object) -> list[str]:
    """Every string of a recipe (steps' run, script lines, container args)."""
    if isinstance(doc, dict):
        return [c for v in doc.values() for c in _commands(v)]
    if isinstance(doc, list):
        return [c for v in doc for c in _commands(v)]
    return [doc] if isinstance(doc, str) else []


@pytest.mark.parametrize("recipe", ["github-actions.yml", "gitlab-ci.yml", "cronjob.yaml"])
def test_every_recipe_runs_the_script_and_never_applies(recipe: str) -> None:
    commands = _commands(yaml.safe_load((CI / recipe).read_text()))
    assert any("policies/ci/nightly-plan.sh" in c for c in commands)
    assert not any("regplan apply" in c or "regplan purge" in c for c in commands)
