from __future__ import annotations

import os
from pathlib import Path

import pytest

from regplan.demo.samples import Registry, build_demo, image
from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import Digest, blob_data, revision_dir
from regplan.scan.manifests import ManifestKind
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage


def test_demo_inventory(demo_root: Path) -> None:
    """Nested repositories, tags with history, index children as revisions."""
    inv = scan(FsStorage.locate(demo_root))
    assert sorted(inv.repositories) == [
        "old/repo",
        "team/app",
        "team/app/cache",
        "team/signed",
        "team/tool",
    ]
    signed = inv.repositories["team/signed"]
    assert len([t for t in signed.tags if t.startswith("sha256-")]) == 3  # 2 .sig, 1 .att
    app = inv.repositories["team/app"]
    assert sorted(app.tags) == ["latest", "v1", "v2"]
    assert len(app.tags["latest"].history) == 3
    assert len(app.revisions) == 5
    tool = inv.repositories["team/tool"]
    current = tool.tags["1.0"].current
    assert current is not None
    assert inv.manifests[current].kind == ManifestKind.OCI_INDEX
    assert set(inv.manifests[current].children) <= tool.revisions
    assert inv.problems == ()
    assert app.tags["v1"].pushed_at < app.tags["latest"].pushed_at


def _first_revision(root: Path, repo: str) -> tuple[Digest, Path]:
    storage = FsStorage.locate(root)
    inv = scan(storage)
    d = min(inv.repositories[repo].revisions)
    return d, storage.v2 / revision_dir(repo, d) / "link"


def test_corrupt_empty_and_mismatched_links_are_problems(demo_root: Path) -> None:
    d, link = _first_revision(demo_root, "old/repo")
    link.write_text("sha256:nothex")
    storage = FsStorage.locate(demo_root)
    tag_link = storage.v2 / "repositories/team/app/_manifests/tags/v2/current/link"
    tag_link.write_bytes(b"")
    layer = next((storage.v2 / "repositories/team/tool/_layers/sha256").iterdir()) / "link"
    layer.write_text(f"sha256:{'0' * 64}")
    inv = scan(storage)
    codes = {(p.code, p.path) for p in inv.problems}
    assert (ProblemCode.CORRUPT_LINK, str(link.relative_to(storage.v2))) in codes
    assert (ProblemCode.EMPTY_LINK, str(tag_link.relative_to(storage.v2))) in codes
    assert (ProblemCode.LINK_MISMATCH, str(layer.relative_to(storage.v2))) in codes
    assert inv.repositories["team/app"].tags["v2"].current is None
    assert d in inv.repositories["old/repo"].revisions  # the path still names it
    assert inv.repositories["old/repo"].damaged == (str(link.relative_to(storage.v2)),)


def test_revision_deleted_through_the_api_is_gone_not_a_problem(tmp_path: Path) -> None:
    """distribution's DELETE removes the revision's link and leaves its empty folder."""
    reg = Registry.create(tmp_path)
    a = reg.push("r", image([{"a": b"1"}]), None)
    reg.push("r", image([{"b": b"1"}]), "t")
    (reg.v2 / revision_dir("r", a) / "link").unlink()
    inv = scan(FsStorage.locate(tmp_path))
    assert a not in inv.repositories["r"].revisions
    assert inv.problems == ()


def test_missing_blob_and_unparseable_manifest(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    a = reg.push("r/a", image([{"a": b"1"}]), "t")
    b = reg.push("r/b", image([{"b": b"2"}]), "t")
    (reg.v2 / blob_data(a)).unlink()
    (reg.v2 / blob_data(b)).write_bytes(b"{not json")
    inv = scan(FsStorage.locate(tmp_path))
    codes = {p.code for p in inv.problems}
    assert ProblemCode.MISSING_BLOB in codes
    assert ProblemCode.UNREADABLE_MANIFEST in codes
    assert not inv.manifests[a].known
    assert not inv.manifests[b].known


def test_symlinks_are_recorded_not_followed(tmp_path: Path) -> None:
    build_demo(tmp_path)
    v2 = FsStorage.locate(tmp_path).v2
    os.symlink("/etc", v2 / "repositories" / "evil")
    inv = scan(FsStorage.locate(tmp_path))
    assert inv.tree.token("repositories/evil") == "s/etc"
    assert list(inv.tree.subtree("repositories/evil")) == ["repositories/evil"]
    assert any(p.code == ProblemCode.SYMLINK for p in inv.problems)


@pytest.mark.parametrize("cold", [True, False])
def test_read_files_in_order_cached_or_cold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cold: bool
) -> None:
    """Cold reads go to threads after the first batch; either way the order holds."""
    from regplan.storage.fs import fsscan as scan_module

    monkeypatch.setattr(scan_module, "COLD_READ", 0.0 if cold else float("inf"))
    names = [f"f{i}" for i in range(50)]
    for name in names[::2]:
        (tmp_path / name).write_text(name)
    got = list(scan_module.read_files(str(tmp_path), names, batch=7))
    assert [g if isinstance(g, bytes) else None for g in got] == [
        n.encode() if i % 2 == 0 else None for i, n in enumerate(names)
    ]
    assert all(isinstance(g, FileNotFoundError) for g in got[1::2])
