"""What a registry must no longer serve once a plan is applied (check --plan)."""

from __future__ import annotations

from pathlib import Path

from regplan.check import removed_by
from tests.helpers import make_plan, selection


def test_a_whole_repository_and_its_blobs(demo_root: Path) -> None:
    plan = make_plan(demo_root, selection(("old/repo",)))
    gone = {(g.kind, g.repo, g.ref) for g in removed_by(plan)}
    assert {("manifest", "old/repo", "2019"), ("manifest", "old/repo", "2020")} <= gone
    blobs = [g for g in removed_by(plan) if g.kind == "blob"]
    assert len(blobs) == 3 and {g.repo for g in blobs} == {"old/repo"}


def test_a_tag_its_revision_history_and_layer_links(demo_root: Path) -> None:
    plan = make_plan(demo_root, selection(("team/signed:v1",)))
    gone = removed_by(plan)
    manifests = {g.ref for g in gone if g.kind == "manifest"}
    assert "v1" in manifests
    assert any(r.endswith(".sig") for r in manifests)  # the signature followed v1
    assert any(r.startswith("sha256:") for r in manifests)  # and the revisions
    layer_links = [g for g in gone if g.label.startswith("team/signed blob ")]
    assert layer_links and all(g.repo == "team/signed" for g in layer_links)


def test_a_repository_removed_folder_by_folder_is_asked_for_once(demo_root: Path) -> None:
    """team/app/cache stays inside team/app: team/app goes as _manifests, _layers, _uploads."""
    plan = make_plan(demo_root, selection(("team/app",)))
    tags = [g.ref for g in removed_by(plan) if g.kind == "manifest" and g.repo == "team/app"]
    assert sorted(tags) == ["latest", "v1", "v2"]
