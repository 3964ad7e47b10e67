from __future__ import annotations

from pathlib import Path

from regplan.scan import fingerprint
from regplan.scan.build import Side
from regplan.scan.tree import digest_events
from regplan.storage.fs.fsscan import events, scan
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import make_plan, reference_digest, reference_entries, remove_targets, selection


def digest(root: Path) -> fingerprint.TreeDigest:
    return reference_digest(reference_entries(FsStorage.locate(root).v2))


def test_predicted_after_equals_tree_after_removal(demo_root: Path) -> None:
    plan = make_plan(demo_root, selection(("team/app:v1", "old/repo"), ("*",), prune=True))
    assert digest(demo_root).digest == plan.fingerprint.before
    remove_targets(demo_root, plan)
    after = digest(demo_root)
    assert after.digest == plan.fingerprint.after
    assert after.entries < plan.fingerprint.entries


def test_metadata_changes_are_seen_and_named(demo_root: Path) -> None:
    before = digest(demo_root)
    v2 = FsStorage.locate(demo_root).v2
    link = v2 / "repositories/team/app/_manifests/tags/v1/current/link"
    link.write_text(link.read_text()[:-1] + "0")
    (v2 / "repositories/new/repo/_manifests").mkdir(parents=True)
    after = digest(demo_root)
    assert after.digest != before.digest
    assert fingerprint.changed_parts(before.parts, after.parts) == [
        "repositories/new (new)",
        "repositories/new/repo (new)",
        "repositories/team/app (changed)",
    ]


def test_blob_size_counts_but_not_contents(demo_root: Path) -> None:
    before = digest(demo_root)
    data = next((FsStorage.locate(demo_root).v2 / "blobs").rglob("data"))
    original = data.read_bytes()
    data.write_bytes(bytes(len(original)))
    assert digest(demo_root).digest == before.digest  # same size: contents are not read
    data.write_bytes(original + b"!")
    changed = fingerprint.changed_parts(before.parts, digest(demo_root).parts)
    assert changed == [
        f"{data.parent.parent.relative_to(FsStorage.locate(demo_root).v2)} (changed)"
    ]


def test_walk_groups_paths_by_part_like_part_of(tmp_path: Path) -> None:
    """The walk decides parts per directory; layout.part_of per path: they must agree."""
    from regplan.demo.samples import build_scale
    from regplan.scan.layout import part_of

    build_scale(tmp_path, repos=3, tags=3, pushes=2, index_every=2)
    v2 = FsStorage.locate(tmp_path).v2
    (v2 / "repositories" / "_odd" / "x").mkdir(parents=True)
    (v2 / "repositories" / "team0" / "_stray").mkdir()
    (v2 / "extra").mkdir()
    (v2 / "extra" / "note").write_text("x")
    (v2 / "top-file").write_text("x")
    by_walk = {rel: part for rel, token, part in events(v2, Side()) if token}
    assert by_walk == {path: part_of(path) for path in reference_entries(v2)}


def test_scan_and_streaming_digests_equal_the_definition(tmp_path: Path) -> None:
    """plan digests the tree as it builds the compact Tree, verify and apply without
    keeping any path: both equal the digest computed from its definition."""
    from regplan.demo.samples import build_demo, build_scale

    build_scale(tmp_path / "a", repos=4, tags=3, pushes=2, index_every=2)
    build_demo(tmp_path / "a" / "docker" / "registry" / "v2" / "repositories" / "x" / "y")
    v2 = FsStorage.locate(tmp_path / "a").v2
    (v2 / "repositories" / "_odd" / "x").mkdir(parents=True)
    (v2 / "top-file").write_text("x")
    (v2 / "extra" / "deep").mkdir(parents=True)
    manifests = next((v2 / "repositories").glob("*/*/_manifests"))
    (manifests / "odd\nname").mkdir()  # a part that cannot be joined into one block
    (manifests / "revisions" / "link").write_bytes(b"sha256:\0\n")
    expected = reference_digest(reference_entries(v2))
    assert digest_events(events(v2, Side())) == expected
    assert scan(FsStorage.locate(tmp_path / "a")).tree.digest == expected
