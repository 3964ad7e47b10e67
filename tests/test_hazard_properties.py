"""Random registries with random hazards planted (hypothesis): the two statements
that must hold whatever the storage holds.

1. What the walk cannot see, the plan keeps: with anything unseen under
   repositories/ no blob is planned, and nothing inside a repository holding
   something unseen is planned.
2. Nothing outside the root is read, written or moved: plan, verify, apply and
   rollback end with a result or a one-line RegplanError, a folder outside the
   root that the planted links point to is untouched, and rollback restores
   the storage byte for byte.

The first is the planner's (pure): it is checked on many registries held in memory
(test_properties.MemTree), whose walk notes the hazards as the filesystem's walk
does. Both are checked on fewer registries on disk, through the real walk, apply
and rollback.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from regplan import apply, workflow
from regplan.decide.planner import decide
from regplan.decide.selection import resolve
from regplan.errors import RegplanError, SelectionError
from regplan.plans import signing
from regplan.plans.plan import TargetKind
from regplan.scan.layout import split_repo
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import (
    KEY,
    NOW,
    docker_hashes,
    make_plan,
    selection,
    write_pub,
)
from tests.test_hostile_apply import snapshot
from tests.test_properties import REPOS, MemTree, Push, build_registry, in_memory, push

HAZARDS = ["symlink-folder", "fifo-link", "unnameable", "corrupt-link", "deep-manifest"]

hazard = st.tuples(st.sampled_from(HAZARDS), st.integers(0, 10_000))


def folders(v2: Path) -> list[Path]:
    """Folders under repositories/, sorted (what a hazard can hit)."""
    out = []
    for dirpath, dirnames, _ in os.walk(v2 / "repositories"):
        dirnames.sort()
        out += [Path(dirpath) / d for d in dirnames]
    return out


def plant(v2: Path, outside: Path, kind: str, pick: int) -> None:
    """One hazard, at a place chosen by ``pick`` among those of its kind."""
    links = sorted(v2.glob("repositories/**/link"))
    if kind == "symlink-folder" and folders(v2):
        target = folders(v2)[pick % len(folders(v2))]
        if target.is_dir() and not target.is_symlink():
            outside.mkdir()
            target.rename(outside / "moved")
            target.symlink_to(outside / "moved")
    elif kind == "fifo-link" and links:
        link = links[pick % len(links)]
        if link.is_file():
            link.unlink()
            os.mkfifo(link)
    elif kind == "unnameable" and folders(v2):
        parent = folders(v2)[pick % len(folders(v2))]
        if parent.is_dir() and not parent.is_symlink():
            with contextlib.suppress(FileExistsError):  # the same pick twice
                os.mkdir(os.fsencode(parent) + b"/\xff" + str(pick).encode())
    elif kind == "corrupt-link" and links:
        link = links[pick % len(links)]
        if link.is_file() and not link.is_symlink():
            link.write_bytes(b"sha256:not-a-digest")
    elif kind == "deep-manifest":
        datas = sorted(p for p in v2.glob("blobs/*/*/*/data") if p.stat().st_size < 4096)
        if datas:
            datas[pick % len(datas)].write_bytes(b"[" * 3000)


def unseen(plan_problems: list[tuple[str, str]]) -> list[str]:
    """Paths under repositories/ the walk could not see (from the plan's problems)."""
    codes = {"symlink", "unreadable", "special-file", "unnameable"}
    return [p for code, p in plan_problems if code in codes and p.startswith("repositories/")]


def check_unseen_is_kept(problems: list[tuple[str, str]], targets: list[tuple[str, str]]) -> None:
    """Statement 1, of a plan's problems (code, path) and targets (kind, path)."""
    # uploads reference nothing: an unseen one changes no decision
    hidden = [
        h
        for h in unseen(problems)
        if "_uploads" not in (split_repo(h) or ("", ""))[1].split("/")[:1]
    ]
    hidden_repos = {s[0] for s in map(split_repo, hidden) if s is not None}
    if hidden:
        assert not [p for kind, p in targets if kind == TargetKind.BLOB.value], hidden
    for kind, path in targets:
        split = split_repo(path + "/_") if kind == TargetKind.REPOSITORY.value else None
        owner = split[0] if split else (split_repo(path) or ("",))[0]
        assert owner not in hidden_repos or kind == TargetKind.EMPTY_DIR.value, (path, hidden)


def memory_folders(tree: MemTree) -> list[str]:
    """``folders`` of a tree in memory, in the same order (os.walk's, top down, each
    folder's names sorted: folders, links to folders, names a plan cannot hold)."""
    children: dict[str, list[str]] = {}
    for path in [*tree.dirs, *tree.symlinks, *tree.unnameable]:
        children.setdefault(path.rpartition("/")[0], []).append(path)
    out: list[str] = []

    def walk(folder: str) -> None:
        below = sorted(children.get(folder, []))
        out.extend(below)
        for path in below:
            if path not in tree.symlinks:
                walk(path)

    walk("repositories")
    return out


def plant_in_memory(tree: MemTree, kind: str, pick: int) -> None:
    """One hazard as the walk meets it (what ``plant`` makes on disk), at a place chosen
    by ``pick`` among those of its kind."""

    def by_parts(paths: Iterable[str]) -> list[str]:
        return sorted(paths, key=lambda p: p.split("/"))

    folders = memory_folders(tree)
    links = by_parts(
        f
        for f in [*tree.files, *tree.specials]
        if f.startswith("repositories/") and f.endswith("/link")
    )
    if kind == "symlink-folder" and folders:
        target = folders[pick % len(folders)]
        if target in tree.symlinks or target in tree.unnameable:
            return  # as on disk: a link is not moved again; a name not walked stays so
        tree.remove(target)  # moved outside the root, a link to it left in its place
        tree.symlinks[target] = f"/outside/{pick}/moved"
    elif kind == "fifo-link" and links:
        link = links[pick % len(links)]
        if link in tree.files:
            tree.remove(link)
            tree.specials.add(link)
    elif kind == "unnameable" and folders:
        tree.unnameable.add(f"{folders[pick % len(folders)]}/\udcff{pick}")
    elif kind == "corrupt-link" and links:
        link = links[pick % len(links)]
        if link in tree.files:
            tree.files[link] = b"sha256:not-a-digest"
    elif kind == "deep-manifest":
        datas = by_parts(
            f for f, data in tree.files.items() if f.endswith("/data") and len(data) < 4096
        )
        if datas:
            tree.files[datas[pick % len(datas)]] = b"[" * 3000


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    pushes=st.lists(push, min_size=1, max_size=8),
    hazards=st.lists(hazard, min_size=1, max_size=3),
    untagged=st.lists(st.sampled_from([*REPOS, "*"]), max_size=2),
    prune=st.booleans(),
)
def test_what_the_walk_cannot_see_is_kept(
    pushes: list[Push], hazards: list[tuple[str, int]], untagged: list[str], prune: bool
) -> None:
    """Statement 1 on registries in memory: the planner keeps what the walk could not
    see into, and the repositories that hold it."""
    tree = in_memory(pushes)
    for kind, pick in hazards:
        plant_in_memory(tree, kind, pick)
    inv = tree.inventory()
    sel = attrs.evolve(selection((), (*untagged, "*"), prune), gc=True)
    try:
        req = resolve(sel, inv)
    except SelectionError:
        assume(False)
        raise
    decision = decide(inv, req, prune=prune)
    check_unseen_is_kept(
        [(p.code.value, p.path) for p in decision.problems],
        [(t.kind.value, t.path) for t in decision.targets],
    )


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    pushes=st.lists(push, min_size=1, max_size=8),
    hazards=st.lists(hazard, min_size=1, max_size=3),
    untagged=st.lists(st.sampled_from([*REPOS, "*"]), max_size=2),
    prune=st.booleans(),
    after=st.integers(0, 10_000),
)
def test_hazards_are_kept_and_nothing_leaves_the_root(
    pushes: list[Push],
    hazards: list[tuple[str, int]],
    untagged: list[str],
    prune: bool,
    after: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root, outside = base / "registry", base / "outside"
        outside.mkdir()
        build_registry(root, pushes)
        v2 = FsStorage.locate(root).v2
        for n, (kind, pick) in enumerate(hazards):
            plant(v2, outside / str(n), kind, pick)
        assert_memory_sees_the_same(root, pushes, hazards)
        (outside / "sentinel").write_text("someone else's")
        (outside / "lure").mkdir()  # what a link planted before rollback points to
        before_outside = snapshot(outside)
        original = docker_hashes(root)

        try:
            plan = make_plan(root, attrs.evolve(selection((), (*untagged, "*"), prune), gc=True))
        except SelectionError:
            assume(False)
            raise
        check_unseen_is_kept(
            [(p.code.value, p.path) for p in plan.problems],
            [(t.kind.value, t.path) for t in plan.targets],
        )

        plan_path = base / "p.json"
        workflow.write_plan(plan, plan_path)
        trusted = [signing.load_trusted(write_pub(KEY, base / "k.pub"))]
        try:
            result = apply.apply_plan(
                plan_path=plan_path, trusted=trusted, root=None, required=1, now=NOW
            )
        except RegplanError as e:
            assert "\n" not in str(e)
        else:
            storage = FsStorage.locate(root)
            undo = plant_before_rollback(v2, base, [t.path for t in plan.targets], after)
            if undo is not None:  # the rollback may refuse, but never goes through the link
                try:
                    apply.rollback(storage=storage, apply_id=result.apply_id, now=NOW)
                except RegplanError as e:
                    assert "\n" not in str(e)
                assert snapshot(outside) == before_outside
                undo()
                assert snapshot(outside) == before_outside
            if apply.records(storage)[-1].state.value != "rolled-back":
                apply.rollback(storage=storage, apply_id=result.apply_id, now=NOW)
        assert docker_hashes(root) == original
        assert snapshot(outside) == before_outside


def assert_memory_sees_the_same(
    root: Path, pushes: list[Push], hazards: list[tuple[str, int]]
) -> None:
    """The same hazards planted in memory are seen as the filesystem's walk sees them on
    disk: the same problems and the same paths not seen into (so the examples in memory
    stand for trees on disk). Not when a link was planted before another hazard: on
    disk that one may reach through the link, which a tree in memory does not hold."""
    if any(kind == "symlink-folder" for kind, _ in hazards[:-1]):
        return
    tree = in_memory(pushes)
    for kind, pick in hazards:
        plant_in_memory(tree, kind, pick)
    disk, memory = scan(FsStorage.locate(root)), tree.inventory()
    assert [(p.path, p.code) for p in disk.problems] == [(p.path, p.code) for p in memory.problems]
    assert disk.blind == memory.blind


def plant_before_rollback(
    v2: Path, base: Path, targets: list[str], pick: int
) -> Callable[[], None] | None:
    """Replace a folder on the way to a moved target (or a pruned one) by a link to
    a folder outside the root; return how to take it away again."""
    ancestors = sorted({t.rsplit("/", i)[0] for t in targets for i in range(1, t.count("/") + 1)})
    if not ancestors:
        return None
    place = v2 / ancestors[pick % len(ancestors)]
    lure = base / "outside" / "lure"
    aside = base / "aside"
    if place.is_symlink() or not place.parent.is_dir() or place.parent.is_symlink():
        return None
    moved = place.exists()
    if moved:
        place.rename(aside)
    place.symlink_to(lure)

    def undo() -> None:
        place.unlink()
        if moved:
            aside.rename(place)

    return undo
