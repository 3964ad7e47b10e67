"""The pitfalls of earlier tools (DESIGN.md section 2), one test each, on real trees."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from regplan.decide.decision import Decision
from regplan.decide.planner import decide
from regplan.decide.selection import resolve
from regplan.demo.samples import Blob, Registry, image, index
from regplan.errors import SelectionError
from regplan.plans.plan import TargetKind
from regplan.scan.layout import (
    blob_data,
    blob_dir,
    encoded_of,
    layer_dir,
    repo_dir,
    revision_dir,
    tag_dir,
    tag_index_dir,
)
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import selection

BASE = {"etc/os-release": b"base"}


def plan_for(
    root: Path, *images: str, untagged: tuple[str, ...] = (), prune: bool = False
) -> Decision:
    inv = scan(FsStorage.locate(root))
    sel = selection(images, untagged, prune)
    return decide(inv, resolve(sel, inv), prune=prune)


def paths(d: Decision, kind: TargetKind | None = None) -> set[str]:
    return {t.path for t in d.targets if kind is None or t.kind == kind}


def kept(d: Decision) -> dict[str, str]:
    return {k.path: k.reason for k in d.kept}


def test_shared_layers_across_repositories_stay(tmp_path: Path) -> None:
    """Pitfall 1: deleting a tag whose layers another repository uses keeps those blobs."""
    reg = Registry.create(tmp_path)
    shared = image([BASE, {"app": b"v1"}])
    reg.push("team/app", shared, "v1")
    reg.push("team/app", image([BASE, {"app": b"v2"}]), "v2")
    reg.push("other/repo", shared, "copy")
    d = plan_for(tmp_path, "team/app:v1")
    assert paths(d, TargetKind.TAG) == {tag_dir("team/app", "v1")}
    assert paths(d, TargetKind.REVISION) == {revision_dir("team/app", shared.digest)}
    assert paths(d, TargetKind.BLOB) == set()  # everything is still used by other/repo:copy
    for b in (shared.manifest, *shared.blobs):
        assert "other/repo:copy" in next(k.refs for k in d.kept if k.path == blob_dir(b.digest))
    # the layer link of the app layer goes from team/app; BASE stays (v2 uses it)
    assert paths(d, TargetKind.LAYER_LINK) == {
        layer_dir("team/app", shared.layers[1].digest),
        layer_dir("team/app", shared.config.digest),
    }


def test_untagged_keeps_children_of_tagged_index(tmp_path: Path) -> None:
    """Pitfall 2: index children are untagged but alive."""
    reg = Registry.create(tmp_path)
    amd, arm = image([BASE], arch="amd64"), image([BASE], arch="arm64")
    multi = index([amd, arm])
    reg.push("team/tool", multi, "1.0")
    stray = image([{"old": b"build"}])
    reg.push("team/tool", stray, None)
    d = plan_for(tmp_path, untagged=("team/*",))
    assert paths(d, TargetKind.REVISION) == {revision_dir("team/tool", stray.digest)}
    for child in (amd, arm):
        path = revision_dir("team/tool", child.digest)
        assert "index child" in kept(d)[path]


def test_removed_index_takes_its_children_unless_tagged(tmp_path: Path) -> None:
    """Children of a removed index go with it; a child a kept tag names stays."""
    reg = Registry.create(tmp_path)
    amd, arm = image([BASE], arch="amd64"), image([{"x": b"1"}], arch="arm64")
    reg.push("team/tool", index([amd, arm]), "1.0")
    reg.tag("team/tool", "arm-only", arm.digest)
    d = plan_for(tmp_path, "team/tool:1.0")
    revs = paths(d, TargetKind.REVISION)
    assert revision_dir("team/tool", amd.digest) in revs
    assert revision_dir("team/tool", arm.digest) not in revs
    reason = next(t.reason for t in d.targets if t.path == revision_dir("team/tool", amd.digest))
    assert reason.startswith("child of removed index team/tool@")
    assert next(t for t in d.targets if t.path == revision_dir("team/tool", amd.digest)).refs == (
        "team/tool:1.0",
    )


def test_nested_repository_survives_parent_removal(demo_root: Path) -> None:
    """Pitfall 10: never remove a folder that holds another repository."""
    d = plan_for(demo_root, "team/app")
    repo_targets = paths(d, TargetKind.REPOSITORY)
    assert repo_targets == {
        f"{repo_dir('team/app')}/_manifests",
        f"{repo_dir('team/app')}/_layers",
        f"{repo_dir('team/app')}/_uploads",
    }
    assert not any(p.startswith("repositories/team/app/cache") for p in paths(d))


def test_nested_both_removed_is_one_folder(demo_root: Path) -> None:
    d = plan_for(demo_root, "team/app", "team/app/cache")
    assert paths(d, TargetKind.REPOSITORY) == {repo_dir("team/app")}


def test_revision_of_another_kept_tag_stays(tmp_path: Path) -> None:
    """Pitfall 7: a revision another kept tag points to is never removed."""
    reg = Registry.create(tmp_path)
    img = image([BASE])
    reg.push("r", img, "a")
    reg.tag("r", "b", img.digest)
    d = plan_for(tmp_path, "r:a")
    assert paths(d) == {tag_dir("r", "a")}
    [k] = d.kept
    assert k.path == revision_dir("r", img.digest)
    assert k.reason == "still reached: the kept tag r:b points to it"
    assert k.refs == ("r:b",)


def test_tag_history_entries_go_with_removed_revision(tmp_path: Path) -> None:
    """Pitfall 6: other tags' history entries of a removed revision go too."""
    reg = Registry.create(tmp_path)
    old, new = image([{"v": b"1"}]), image([{"v": b"2"}])
    reg.push("r", old, "latest")
    reg.push("r", new, "latest")  # latest's history: old, new
    reg.tag("r", "pinned", old.digest)
    d = plan_for(tmp_path, "r:pinned")
    assert tag_index_dir("r", "latest", old.digest) in paths(d, TargetKind.TAG_INDEX)
    assert revision_dir("r", old.digest) in paths(d, TargetKind.REVISION)


def test_last_tag_removes_repository(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    reg.push("solo", image([BASE]), "only")
    reg.push("keep", image([{"k": b"1"}]), "x")
    d = plan_for(tmp_path, "solo:only")
    [t] = [t for t in d.targets if t.kind == TargetKind.REPOSITORY]
    assert t.path == repo_dir("solo")
    assert "last tag removed (only)" in t.reason


def test_referrers_follow_their_subject(tmp_path: Path) -> None:
    """Pitfall 5: a referrer of a kept manifest stays; of a removed one, it goes."""
    reg = Registry.create(tmp_path)
    kept_img, gone_img = image([{"k": b"1"}]), image([{"g": b"1"}])
    reg.push("r", kept_img, "keep")
    reg.push("r", gone_img, "gone")
    sig_kept = image([{"sig": b"k"}], subject=kept_img.manifest)
    sig_gone = image([{"sig": b"g"}], subject=gone_img.manifest)
    reg.push("r", sig_kept, None)
    reg.push("r", sig_gone, None)
    d = plan_for(tmp_path, "r:gone", untagged=("r",))
    revs = paths(d, TargetKind.REVISION)
    assert revision_dir("r", sig_gone.digest) in revs
    assert revision_dir("r", sig_kept.digest) not in revs
    reason = next(t.reason for t in d.targets if t.path == revision_dir("r", sig_gone.digest))
    assert "referrer of removed r@" in reason or "untagged" in reason


def test_referrer_of_removed_tag_goes_without_untagged(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    keep, gone = image([{"k": b"1"}]), image([{"g": b"1"}])
    reg.push("r", keep, "keep")
    reg.push("r", gone, "gone")
    sig = image([{"sig": b"g"}], subject=gone.manifest)
    reg.push("r", sig, None)
    d = plan_for(tmp_path, "r:gone")
    t = next(t for t in d.targets if t.path == revision_dir("r", sig.digest))
    assert t.reason == f"referrer of removed r@{gone.digest}"


def test_config_blob_is_a_reference(tmp_path: Path) -> None:
    """Pitfall 4: a config shared with a kept image stays."""
    reg = Registry.create(tmp_path)
    a = image([{"a": b"1"}])
    reg.push("r", a, "a")
    reg.push("r", a, "b")
    reg.push("s", image([{"s": b"1"}]), "s")
    # a second manifest in another repo with the same config but different layers
    doc = a.manifest.data.replace(encoded_of(a.layers[0].digest).encode(), b"f" * 64)
    other = Blob(doc, a.manifest.media_type)
    reg.blob(other)
    reg._link(revision_dir("s", other.digest), other.digest)
    d = plan_for(tmp_path, "r")
    assert blob_dir(a.config.digest) not in paths(d)
    assert blob_dir(a.layers[0].digest) in paths(d)


def test_unparseable_manifest_fails_closed(tmp_path: Path) -> None:
    """Pitfall 3: an unreadable manifest keeps everything it might reference."""
    reg = Registry.create(tmp_path)
    good, bad = image([{"g": b"1"}]), image([{"b": b"1"}])
    reg.push("r", good, "good")
    reg.push("r", bad, "bad")
    (reg.v2 / blob_data(bad.digest)).write_bytes(b"\x00garbage")
    d = plan_for(tmp_path, "r:good")
    assert paths(d) == {tag_dir("r", "good")}
    assert "unreadable" in kept(d)[revision_dir("r", good.digest)]
    assert any(p.code.value == "unreadable-manifest" for p in d.problems)
    d2 = plan_for(tmp_path, "r:bad")
    assert paths(d2) == {tag_dir("r", "bad")}
    assert "manifest unreadable" in kept(d2)[revision_dir("r", bad.digest)]


def test_corrupt_tag_link_fails_closed(tmp_path: Path) -> None:
    """Pitfall 9: a corrupt link is reported and nothing it might point to is removed."""
    reg = Registry.create(tmp_path)
    a, b = image([{"a": b"1"}]), image([{"b": b"1"}])
    reg.push("r", a, "a")
    reg.push("r", b, "b")
    (reg.v2 / tag_dir("r", "b") / "current" / "link").write_text("garbage")
    d = plan_for(tmp_path, "r:a", untagged=("r",))
    assert paths(d) == {tag_dir("r", "a")}
    codes = {p.code.value for p in d.problems}
    assert {"corrupt-link", "unknown-tag-target"} <= codes


def test_missing_blob_of_layer_is_reported_not_crashed(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    a = image([{"a": b"1"}])
    reg.push("r", a, "a")
    reg.push("s", image([{"s": b"1"}]), "s")
    (reg.v2 / blob_data(a.layers[0].digest)).unlink()
    d = plan_for(tmp_path, "r")
    assert any(p.code.value == "missing-blob" for p in d.problems)
    assert blob_dir(a.layers[0].digest) not in paths(d)  # not a blob: no data to sweep
    pruned = plan_for(tmp_path, "r", prune=True)
    shard = blob_dir(a.layers[0].digest).rsplit("/", 1)[0]
    assert shard in paths(pruned, TargetKind.EMPTY_DIR)  # the largest empty folder


def test_uploads_are_not_references(tmp_path: Path) -> None:
    """Pitfall 8: upload folders neither keep blobs nor get swept by a tag request."""
    reg = Registry.create(tmp_path)
    a = image([{"a": b"1"}])
    reg.push("r", a, "a")
    reg.push("r", image([{"b": b"1"}]), "b")
    reg.upload("r", "uuid-1", "2026-01-01T00:00:00Z", b"partial")
    d = plan_for(tmp_path, "r:a")
    assert not any("_uploads" in p for p in paths(d))


def test_removal_order_is_safe(demo_root: Path) -> None:
    """Pitfall 11: tags, tag index, revisions, layer links, blobs, then empty folders."""
    d = plan_for(demo_root, "team/app:v1", "old/repo", untagged=("*",), prune=True)
    phases = [t.kind.phase for t in d.targets]
    assert phases == sorted(phases)
    kinds = [t.kind for t in d.targets]
    assert kinds.index(TargetKind.BLOB) > kinds.index(TargetKind.LAYER_LINK)


def test_prune_never_removes_roots_and_takes_maximal_empty_folders(tmp_path: Path) -> None:
    """Pitfall 12."""
    reg = Registry.create(tmp_path)
    reg.push("a/b", image([{"x": b"1"}]), "t")
    (reg.v2 / "repositories" / "empty" / "deeper").mkdir(parents=True)
    d = plan_for(tmp_path, "a/b", prune=True)
    empty = paths(d, TargetKind.EMPTY_DIR)
    assert "repositories/empty" in empty
    assert "repositories/empty/deeper" not in empty
    assert "repositories/a" in empty
    assert not empty & {"", "blobs", "repositories"}
    assert "blobs/sha256" in empty  # every blob went


def test_targets_are_disjoint(demo_root: Path) -> None:
    """Apart from pruned folders, no target lies inside another."""
    d = plan_for(demo_root, "team/app:v1", "old/repo", untagged=("*",))
    ps = sorted(paths(d))
    for a, b in itertools.pairwise(ps):
        assert not b.startswith(a + "/")


@pytest.mark.parametrize(
    ("images", "untagged", "message"),
    [
        (("nope",), (), "--image nope: no repository matches"),
        (("team/app:v9",), (), "team/app has no tag matching 'v9' (tags: latest, v1, v2)"),
        ((), ("zzz/*",), "--untagged zzz/*: no repository matches"),
    ],
)
def test_request_matching_nothing_is_an_error(
    demo_root: Path, images: tuple[str, ...], untagged: tuple[str, ...], message: str
) -> None:
    with pytest.raises(SelectionError) as e:
        plan_for(demo_root, *images, untagged=untagged)
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("pattern", "nearest"),
    [
        ("tema/*", "team/app, team/app/cache, team/signed, team/tool"),
        ("team/ap", "team/app, team/app/cache, team/tool"),
        ("old/rpeo", "old/repo"),
    ],
)
def test_a_typo_lists_the_nearest_repositories(demo_root: Path, pattern: str, nearest: str) -> None:
    """#33.12: ``--image 'tema/*'`` names the repositories near what was typed, not every
    repository of the storage."""
    with pytest.raises(SelectionError) as e:
        plan_for(demo_root, pattern)
    assert str(e.value) == f"--image {pattern}: no repository matches (nearest: {nearest})"


def test_a_pattern_near_nothing_says_so(demo_root: Path) -> None:
    with pytest.raises(SelectionError) as e:
        plan_for(demo_root, untagged=("zzz/*",))
    assert str(e.value) == (
        "--untagged zzz/*: no repository matches, and none is near it (5 repositories)"
    )


def test_globs_cross_slashes(demo_root: Path) -> None:
    d = plan_for(demo_root, untagged=("team/*",))
    assert all(
        t.path.startswith("repositories/team/app/") or t.kind == TargetKind.BLOB for t in d.targets
    )
