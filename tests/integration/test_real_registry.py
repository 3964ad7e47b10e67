"""regplan against the real registry: real pushes (skopeo), real pulls after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from regplan.decide.selection import Selection
from regplan.demo.samples import DemoImages, Image, Index, build_demo
from regplan.plans.plan import Plan, TargetKind
from regplan.scan.layout import blob_dir, layer_dir, revision_dir, tag_dir, tag_index_dir
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import content_hashes, make_plan, remove_targets, selection
from tests.integration.realreg import RealRegistry, Serve, all_refs, copy_of


def test_builder_is_byte_faithful(pushed: tuple[Path, DemoImages], tmp_path: Path) -> None:
    """demo.py writes exactly the files, links and bytes the real registry writes."""
    built = tmp_path / "built"
    build_demo(built)
    v2 = ("docker", "registry", "v2")
    assert content_hashes(built.joinpath(*v2)) == content_hashes(pushed[0].joinpath(*v2))


def test_demo_tree_is_served(serve: Serve, tmp_path: Path) -> None:
    """The real registry serves a tree written by demo.py: every tag and revision pulls."""
    root = tmp_path / "demo"
    build_demo(root)
    reg = serve(root)
    refs = all_refs(root)
    assert len(refs) == 28  # 5 tags and 5 revisions of team/signed (3 of them signatures)
    assert all(reg.pull(ref) for ref in sorted(refs))


def prove(reg: RealRegistry, before: set[str], plan: Plan, root: Path) -> tuple[set[str], set[str]]:
    """Remove the targets, restart, and pull: kept refs pull, removed ones do not."""
    remove_targets(root, plan)
    reg.restart()
    after = all_refs(root)
    assert after <= before
    failed = {ref for ref in sorted(after) if not reg.pull(ref)}
    assert failed == set(), f"kept images no longer pull: {failed}"
    gone = before - after
    still = {ref for ref in sorted(gone) if reg.pull(ref)}
    assert still == set(), f"removed images still pull: {still}"
    return after, gone


def test_tag_whose_layers_another_repo_uses(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    before = all_refs(root)
    v1 = pushed[1].tagged()["team/app:v1"]
    assert isinstance(v1, Image)
    plan = make_plan(root, selection(("team/app:v1",)))
    assert {(t.kind, t.path) for t in plan.targets} == {
        (TargetKind.TAG, tag_dir("team/app", "v1")),
        (TargetKind.REVISION, revision_dir("team/app", v1.digest)),
        (TargetKind.LAYER_LINK, layer_dir("team/app", v1.config.digest)),
        (TargetKind.LAYER_LINK, layer_dir("team/app", v1.layers[1].digest)),
    }  # no blob: old/repo:2019 is the same image
    _, gone = prove(reg, before, plan, root)
    assert gone == {"team/app:v1", f"team/app@{v1.digest}"}
    assert reg.pull("old/repo:2019")


def test_untagged_keeps_multi_arch_children(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """Re-pushed leftovers go; the tagged index's untagged children stay and pull."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    before = all_refs(root)
    builds = [i for r, t, i in pushed[1].pushes if t == "latest"]
    leftovers = [b for b in builds[:-1] if isinstance(b, Image)]
    assert len(leftovers) == 2
    plan = make_plan(root, selection((), ("team/*",)))
    expected = set()
    for img in leftovers:
        expected |= {
            (TargetKind.REVISION, revision_dir("team/app", img.digest)),
            (TargetKind.TAG_INDEX, tag_index_dir("team/app", "latest", img.digest)),
            (TargetKind.BLOB, blob_dir(img.digest)),
        }
        for b in (img.config, img.layers[1]):
            expected |= {
                (TargetKind.LAYER_LINK, layer_dir("team/app", b.digest)),
                (TargetKind.BLOB, blob_dir(b.digest)),
            }
    assert {(t.kind, t.path) for t in plan.targets} == expected
    tool = pushed[1].tagged()["team/tool:1.0"]
    assert isinstance(tool, Index)
    for child in tool.children:
        assert any(k.path == revision_dir("team/tool", child.digest) for k in plan.kept)
    _, gone = prove(reg, before, plan, root)
    assert gone == {f"team/app@{img.digest}" for img in leftovers}
    for child in tool.children:
        assert reg.pull(f"team/tool@{child.digest}")


@pytest.mark.parametrize(
    ("images", "untagged", "prune", "gone_tags"),
    [
        (("old/repo",), (), False, {"old/repo:2019", "old/repo:2020"}),
        (("team/app",), (), True, {"team/app:v1", "team/app:v2", "team/app:latest"}),
        (("team/tool:1.0", "old/repo:2020"), ("*",), True, {"team/tool:1.0", "old/repo:2020"}),
        ((), ("*",), True, set()),
    ],
    ids=["whole-repo", "parent-of-nested-repo", "index-and-tag-and-untagged", "untagged-all-prune"],
)
def test_requests_against_real_pushes(
    pushed: tuple[Path, DemoImages],
    serve: Serve,
    tmp_path: Path,
    images: tuple[str, ...],
    untagged: tuple[str, ...],
    prune: bool,
    gone_tags: set[str],
) -> None:
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    before = all_refs(root)
    plan = make_plan(root, selection(images, untagged, prune))
    after, gone = prove(reg, before, plan, root)
    assert {g for g in gone if "@" not in g} == gone_tags
    assert "team/app/cache:stable" in after  # nested inside team/app, never touched
    v2 = FsStorage.locate(root).v2
    assert (v2 / "blobs").is_dir() and (v2 / "repositories").is_dir()


def test_registry_gc_and_a_multi_arch_image(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """garbage-collect --delete-untagged: distribution 2.8 deletes a multi-arch image's
    children and breaks the image; v3 marks index children (distribution#4285)."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    reg.stop()
    tool = pushed[1].tagged()["team/tool:1.0"]
    assert isinstance(tool, Index)
    out = reg.garbage_collect("--delete-untagged")
    reg.start()
    broken = [c for c in tool.children if not reg.pull(f"team/tool@{c.digest}")]
    if reg.version == "2.8":
        assert broken, f"expected garbage-collect to delete index children; output:\n{out[-2000:]}"
        assert not reg.pull("team/tool:1.0")
    else:
        assert not broken, out[-2000:]
        assert reg.pull("team/tool:1.0")


def test_unknown_entries_and_leftovers_in_a_real_registry(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """A referrers store inside a revision folder (a v3 proposal, distribution#4483) and
    a blob folder v3.1 left mid-write: the plan reports both, team/app fails closed, and
    after the apply every kept image pulls from the real registry."""
    root = copy_of(pushed, tmp_path)
    v2 = FsStorage.locate(root).v2
    revisions = v2 / "repositories/team/app/_manifests/revisions/sha256"
    referrers = sorted(revisions.iterdir())[0] / "_referrers"
    referrers.mkdir()
    name = "data.0b0e3a6e-7a7c-4a1e-9c1e-0123456789ab.tmp"
    leftover = v2 / "blobs/sha256/ee" / ("ee" * 32) / name
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a manifest")
    reg = serve(root)
    before = all_refs(root)
    plan = make_plan(root, Selection(untagged=("*",), gc=True))
    codes = {p.path: p.code.value for p in plan.problems}
    assert "unknown-entry" in codes.values() and "leftover-temp-file" in codes.values()
    assert not [t for t in plan.targets if t.path.startswith("repositories/team/app/")]
    after, _ = prove(reg, before, plan, root)
    assert {r for r in before if r.startswith("team/app")} <= after
    assert referrers.is_dir() and leftover.is_file()
