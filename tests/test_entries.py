"""What distribution keeps in a repository, and what it does not (#23): entries regplan
does not know, at any depth, fail their repository closed; the temporary files v3.1
leaves when it stops mid-write are reported and never read as what they stand for."""

from __future__ import annotations

from pathlib import Path

import pytest

from regplan.decide.selection import Selection
from regplan.plans.plan import Plan, TargetKind
from regplan.scan.entries import Entry, entry, stands_for
from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import encoded_of, tag_dir
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import make_plan, selection

TMP = ".0b0e3a6e-7a7c-4a1e-9c1e-0123456789ab.tmp"


@pytest.mark.parametrize(
    ("rest", "directory", "found"),
    [
        ("_manifests/revisions/sha256/abc", True, Entry.KNOWN),
        ("_manifests/revisions/sha256/abc/link", False, Entry.KNOWN),
        ("_manifests/revisions/sha256/abc/_referrers", True, Entry.UNKNOWN),
        ("_manifests/revisions/sha256/abc/signatures/sha256/def", True, Entry.KNOWN),
        ("_manifests/revisions/sha256/abc/signatures/sha256/def/link", False, Entry.KNOWN),
        ("_manifests/revisions/sha256/abc/signatures/x/y/z", True, Entry.UNKNOWN),
        ("_manifests/revisions/sha256/abc/_referrers/x/link", False, Entry.UNKNOWN),
        ("_manifests/tags/v1/current/link", False, Entry.KNOWN),
        ("_manifests/tags/v1/index/sha256/abc/link", False, Entry.KNOWN),
        ("_manifests/tags/v1/current/notes", False, Entry.UNKNOWN),
        ("_manifests/tags/v1/current/link" + TMP, False, Entry.LEFTOVER),
        ("_manifests/tags/v1/link" + TMP, False, Entry.UNKNOWN),  # no link lives there
        ("_layers/sha256/abc/link", False, Entry.KNOWN),
        ("_layers/sha256/abc/data", False, Entry.UNKNOWN),
        ("_uploads/u/data", False, Entry.KNOWN),
        ("_uploads/u/hashstates/sha256/0", False, Entry.KNOWN),
        ("_uploads/u/startedat" + TMP, False, Entry.LEFTOVER),
        ("_referrers", True, Entry.UNKNOWN),
        ("_manifests/other", True, Entry.UNKNOWN),
    ],
)
def test_entries(rest: str, directory: bool, found: Entry) -> None:
    assert entry(rest, directory=directory) is found


def test_a_temporary_file_names_what_it_stands_for() -> None:
    assert stands_for("link" + TMP) == "link"
    assert stands_for("data" + TMP) == "data"
    assert stands_for(TMP) is None and stands_for("link.tmp") is None


def problems(plan: Plan) -> dict[str, ProblemCode]:
    return {p.path: p.code for p in plan.problems}


def app_revisions(root: Path) -> list[Path]:
    base = FsStorage.locate(root).v2 / "repositories/team/app/_manifests/revisions/sha256"
    return sorted(base.iterdir())


def test_a_referrers_store_inside_a_revision_fails_its_repository_closed(
    demo_root: Path,
) -> None:
    """A proposal for v3 (distribution#4483) puts ``_referrers/`` inside a revision
    folder: reported, and nothing of team/app goes, not even the untagged revision."""
    untouched = make_plan(demo_root, Selection(untagged=("team/app",), gc=True))
    assert any(t.kind is TargetKind.REVISION for t in untouched.targets)
    inside = app_revisions(demo_root)[0] / "_referrers/sha256/ab"
    inside.mkdir(parents=True)
    (inside / "link").write_text("sha256:" + "ab" * 32)
    plan = make_plan(demo_root, Selection(untagged=("team/app",), gc=True))
    found = f"repositories/team/app/_manifests/revisions/sha256/{app_revisions(demo_root)[0].name}"
    assert problems(plan)[f"{found}/_referrers"] is ProblemCode.UNKNOWN_ENTRY
    assert f"{found}/_referrers/sha256" not in problems(plan)  # the outermost only
    assert not [t for t in plan.targets if t.path.startswith("repositories/team/app/")]
    kept = {k.path: k.reason for k in plan.kept}
    assert any("not something distribution keeps there" in r for r in kept.values())


def test_a_repository_holding_unknown_entries_is_not_removed_whole(demo_root: Path) -> None:
    (FsStorage.locate(demo_root).v2 / "repositories/old/repo/_manifests/notes.txt").write_text("x")
    plan = make_plan(demo_root, selection(("old/repo",)))
    assert "repositories/old/repo" not in {t.path for t in plan.targets}
    assert all(t.kind is TargetKind.TAG for t in plan.targets)  # its tags go instead
    kept = {k.path: k.reason for k in plan.kept}
    assert "which distribution does not keep there" in kept["repositories/old/repo"]
    assert problems(plan)["repositories/old/repo/_manifests/notes.txt"] is (
        ProblemCode.UNKNOWN_ENTRY
    )


def test_a_leftover_link_is_never_read_as_the_link(demo_root: Path) -> None:
    """v3.1 writes ``link.<uuid>.tmp`` and renames it: a crash before the rename leaves a
    tag without its link (a problem, as before) and the leftover (reported)."""
    v2 = FsStorage.locate(demo_root).v2
    current = v2 / tag_dir("team/app", "v2") / "current"
    (current / "link").rename(current / ("link" + TMP))
    inv = scan(FsStorage.locate(demo_root))
    assert inv.repositories["team/app"].tags["v2"].current is None
    codes = {p.path: p.code for p in inv.problems}
    assert codes[f"{tag_dir('team/app', 'v2')}/current/link"] is ProblemCode.MISSING_LINK
    assert codes[f"{tag_dir('team/app', 'v2')}/current/link{TMP}"] is ProblemCode.LEFTOVER_TEMP
    assert not inv.repositories["team/app"].unknown  # a leftover is known: no fail closed


def test_a_blob_folder_holding_only_a_leftover_is_no_blob(demo_root: Path) -> None:
    v2 = FsStorage.locate(demo_root).v2
    hexd = "ee" * 32
    folder = v2 / f"blobs/sha256/ee/{hexd}"
    folder.mkdir(parents=True)
    (folder / ("data" + TMP)).write_bytes(b"half a manifest")
    inv = scan(FsStorage.locate(demo_root))
    assert not [d for d in inv.blobs if encoded_of(d) == hexd]
    plan = make_plan(demo_root, Selection(gc=True, prune=True))
    assert problems(plan)[f"blobs/sha256/ee/{hexd}/data{TMP}"] is ProblemCode.LEFTOVER_TEMP
    assert not [t for t in plan.targets if hexd in t.path]


def test_a_revision_link_left_mid_write_is_reported_and_the_revision_stays(
    demo_root: Path,
) -> None:
    """Beside its link, a leftover is reported; the revision is read from the link."""
    v2 = FsStorage.locate(demo_root).v2
    rev = app_revisions(demo_root)[0]
    (rev / ("link" + TMP)).write_text("sha256:" + "00" * 32)
    inv = scan(FsStorage.locate(demo_root))
    digests = {encoded_of(d) for d in inv.repositories["team/app"].revisions}
    assert rev.name in digests
    rel = str((rev / ("link" + TMP)).relative_to(v2))
    assert {p.path: p.code for p in inv.problems}[rel] is ProblemCode.LEFTOVER_TEMP
