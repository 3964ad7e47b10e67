"""Damaged and hostile storage, part 1: what the walk cannot see, the plan keeps.

Unreadable folders need an unprivileged walk (root lists mode 000), so those
tests plan in a forked child that dropped to ``nobody`` (helpers.as_nobody).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from regplan.decide.flags import Retention
from regplan.decide.selection import Selection
from regplan.demo.samples import build_demo
from regplan.plans.plan import Plan, TargetKind
from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import encoded_of
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import as_nobody, hide, make_plan, remove_tree, selection, shared_tmp


@pytest.fixture
def world() -> Iterator[Path]:
    """A demo registry in a folder ``nobody`` can reach."""
    base = shared_tmp()
    build_demo(base / "registry")
    yield base / "registry"
    remove_tree(base)


def v2(root: Path) -> Path:
    return FsStorage.locate(root).v2


def blob_targets(plan: Plan) -> list[str]:
    return [t.path for t in plan.targets if t.kind == TargetKind.BLOB]


def gc(root: Path) -> Plan:
    return make_plan(root, Selection(gc=True))


def test_gc_frees_old_repo_blobs_once_the_repository_is_gone(world: Path) -> None:
    """The control: a walk that does not see old/repo finds 3 blobs nothing references
    (old/repo:2020's manifest, config and layer). Before the fix, a symlinked or
    unlistable old/repo looked exactly like this to --gc."""
    shutil.rmtree(v2(world) / "repositories/old")
    assert len(blob_targets(gc(world))) == 3


def test_gc_keeps_the_blobs_of_a_symlinked_repository(world: Path) -> None:
    """distribution follows `repositories/old -> elsewhere`; regplan cannot look, so keeps."""
    elsewhere = world.parent / "other-disk"
    (v2(world) / "repositories/old").rename(elsewhere)
    (v2(world) / "repositories/old").symlink_to(elsewhere)
    plan = gc(world)
    assert blob_targets(plan) == []
    kept = {k.path: k.reason for k in plan.kept}
    assert "repositories/old cannot be seen" in kept["blobs"]
    assert any(p.code == ProblemCode.SYMLINK for p in plan.problems)


@pytest.mark.parametrize(
    "hidden",
    [
        "repositories/old/repo",
        "repositories/old",
        "repositories/team",
        "repositories/old/repo/_manifests",
        "repositories/old/repo/_manifests/revisions",
        "repositories/old/repo/_layers",
    ],
)
def test_gc_keeps_what_an_unlistable_folder_might_reference(world: Path, hidden: str) -> None:
    """Whatever cannot be listed might reference any blob: none goes, and the
    repository it lies in keeps its layer links."""
    hide(v2(world) / hidden)
    plan = as_nobody(lambda: gc(world))
    assert blob_targets(plan) == []
    assert not [t for t in plan.targets if t.path.startswith("repositories/old/")]
    assert "cannot be seen" in {k.path: k.reason for k in plan.kept}["blobs"]
    assert any(p.code == ProblemCode.UNREADABLE and p.path == hidden for p in plan.problems)


def test_an_unlistable_upload_folder_does_not_stop_gc(world: Path) -> None:
    """Uploads reference nothing: an unreadable one blocks no blob."""
    shutil.rmtree(v2(world) / "repositories/old")
    upload = v2(world) / "repositories/team/tool/_uploads/u1"
    upload.mkdir()
    hide(upload)
    plan = as_nobody(lambda: gc(world))
    assert len(blob_targets(plan)) == 3


def test_prune_never_takes_a_folder_holding_an_unlistable_one(world: Path) -> None:
    hide(v2(world) / "repositories/old/repo")
    plan = as_nobody(lambda: make_plan(world, selection(prune=True)))
    assert not [t.path for t in plan.targets if t.path.startswith("repositories/old")]


def test_removing_a_repository_never_takes_an_unseen_folder_inside_it(world: Path) -> None:
    """team/app/cache might be a repository: team/app goes folder by folder, cache stays."""
    hide(v2(world) / "repositories/team/app/cache")
    plan = as_nobody(lambda: make_plan(world, selection(images=("team/app",))))
    paths = {t.path for t in plan.targets}
    assert "repositories/team/app" not in paths
    assert "repositories/team/app/_manifests" in paths


def test_damaged_links_of_one_path_sort_and_plan(world: Path) -> None:
    """A symlinked link file in an unreadable tag folder: two problems of one path
    (this was a TypeError sorting problems by their enum)."""
    current = v2(world) / "repositories/old/repo/_manifests/tags/2019/current"
    (current / "link").unlink()
    (current / "link").symlink_to("/etc/passwd")
    hide(v2(world) / "repositories/team/tool/_manifests/tags")
    plan = as_nobody(lambda: make_plan(world, selection(images=("team/app:v1",))))
    assert plan.targets  # team/app:v1 itself still goes
    assert blob_targets(plan) == []
    assert {"repositories/old/repo/_manifests/tags/2019/current/link"} <= {
        p.path for p in plan.problems
    }


@pytest.mark.parametrize(
    "name",
    [b"caf\xe9", b"new\nline", b"tab\there"],
    ids=["not-utf8", "newline", "tab"],
)
def test_a_name_a_plan_cannot_hold_is_kept_and_reported(tmp_path: Path, name: bytes) -> None:
    """old/repo moved under a folder with such a name: its 3 blobs look unreferenced
    (see the control above), yet none goes."""
    root = tmp_path / "registry"
    build_demo(root)
    repositories = os.fsencode(v2(root) / "repositories")
    os.rename(repositories + b"/old", repositories + b"/" + name)
    plan = gc(root)
    assert blob_targets(plan) == []  # what is there might reference them
    assert [p.code for p in plan.problems] == [ProblemCode.UNNAMEABLE]
    assert "\n" not in plan.problems[0].path


def test_a_non_utf8_tag_is_never_a_target(tmp_path: Path) -> None:
    """Retention over a repository with an unnameable tag: the tag is never planned."""
    root = tmp_path / "registry"
    build_demo(root)
    tags = v2(root) / "repositories/old/repo/_manifests/tags"
    os.rename(tags / "2019", os.fsencode(tags) + b"/\xff2019")
    plan = make_plan(
        root,
        Selection(
            images=selection(images=("old/repo",)).images,
            retention=Retention(keep_last=0, allow_empty_repos=True),
        ),
    )
    assert all("\\xff" not in t.path and "\udcff" not in t.path for t in plan.targets)
    assert blob_targets(plan) == []


def test_deeply_nested_manifest_fails_closed(tmp_path: Path) -> None:
    """A manifest nested 5,000 deep is unreadable (it was a RecursionError)."""
    root = tmp_path / "registry"
    build_demo(root)
    revisions = v2(root) / "repositories/old/repo/_manifests/revisions/sha256"
    digest = sorted(p.name for p in revisions.iterdir())[0]
    data = v2(root) / f"blobs/sha256/{digest[:2]}/{digest}/data"
    data.chmod(0o644)
    data.write_bytes(b"[" * 5000 + b"]" * 5000)
    plan = make_plan(root, Selection(gc=True, untagged=("old/repo",)))
    assert not [t for t in plan.targets if t.path.startswith("repositories/old/")]
    assert any(p.code == ProblemCode.UNREADABLE_MANIFEST for p in plan.problems)


def test_deeply_nested_config_with_sort_by_created(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    images = build_demo(root)
    config = images.pushes[0][2].config.digest  # type: ignore[union-attr]
    data = v2(root) / f"blobs/sha256/{encoded_of(config)[:2]}/{encoded_of(config)}/data"
    data.write_bytes(b"{" + b'"a":{' * 5000 + b"}" * 5001)
    plan = make_plan(
        root,
        Selection(
            images=selection(images=("team/app",)).images,
            retention=Retention(keep_last=1, sort_by="created"),
        ),
    )
    assert plan.targets


FIFO_PLACES = {
    "link": "repositories/old/repo/_manifests/tags/2019/current/link",
    "startedat": "repositories/team/tool/_uploads/u1/startedat",
    "manifest": "MANIFEST",
}


@pytest.mark.parametrize("place", sorted(FIFO_PLACES))
def test_a_fifo_never_hangs_plan_verify_or_apply(tmp_path: Path, place: str) -> None:
    """Each command runs in its own process with a deadline: a read of the FIFO would
    block forever (apply while holding the lock)."""
    root = tmp_path / "registry"
    build_demo(root)
    rel = FIFO_PLACES[place]
    if rel == "MANIFEST":
        revisions = v2(root) / "repositories/old/repo/_manifests/revisions/sha256"
        digest = sorted(p.name for p in revisions.iterdir())[0]
        rel = f"blobs/sha256/{digest[:2]}/{digest}/data"
    fifo = v2(root) / rel
    fifo.parent.mkdir(parents=True, exist_ok=True)
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    key = tmp_path / "k"
    plan = tmp_path / "p.json"

    def regplan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "regplan", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert regplan("keygen", str(key)).returncode == 0
    made = regplan("plan", "--root", str(root), "--key", str(key), "-o", str(plan), "--gc")
    assert made.returncode == 0, made.stderr
    assert "special-file" in regplan("show", str(plan)).stdout
    trust = ("--trust", f"{key}.pub")
    assert regplan("verify", str(plan), *trust).returncode == 0
    applied = regplan("apply", str(plan), *trust, "--json")
    assert applied.returncode == 0, applied.stderr
    assert fifo.exists()
