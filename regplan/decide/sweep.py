"""The sweep after the repositories are decided: which blobs go (nothing that stays
references them, in any repository), and which folders are empty once the targets go.
Pure."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping

import attrs

from regplan.decide.reach import Reach
from regplan.decide.selection import Resolved
from regplan.scan import tokens
from regplan.scan.inventory import Inventory, ProblemCode, Repository
from regplan.scan.layout import ROOTS, Digest

NO_IMAGES: frozenset[str] = frozenset()


@attrs.define
class RepoResult:
    removed: dict[Digest, Collection[str]] = attrs.field(factory=dict)
    """removed revision -> the images whose removal took it."""
    layers_removed: set[Digest] = attrs.field(factory=set)
    fail_closed: str = ""
    """Why nothing this repository might reference may be removed ("" when it is sound)."""


@attrs.define
class Keepers:
    """The candidate blobs something that stays references (``held``), and for those
    the plan explains (``named``: touched by the request), what references them.

    A --gc plan makes every blob a candidate; only the touched ones need names,
    which for a shared base layer are thousands."""

    named: Mapping[Digest, Collection[str]]
    """The candidates: those with images (what the request touched) are named."""
    held: set[Digest] = attrs.field(factory=set)
    names: dict[Digest, set[str]] = attrs.field(factory=dict)

    def add(self, blob: Digest, names: Iterable[str]) -> None:
        self.held.add(blob)
        if self.named.get(blob):
            self.names.setdefault(blob, set()).update(names)


def blob_candidates(
    inv: Inventory, req: Resolved, results: Mapping[str, RepoResult]
) -> dict[Digest, Collection[str]]:
    """Blobs the request may free, with the images whose removal freed them.

    With --gc every blob is a candidate (those with no images: gc only).
    """
    candidates: dict[Digest, Collection[str]] = {}
    for result in results.values():
        for d, sources in result.removed.items():
            m = inv.manifests.get(d)
            if m is None or not m.known:
                continue  # fail closed: an unreadable manifest's blob and refs stay
            _add_sources(candidates, d, sources)
            for b in m.blobs:
                _add_sources(candidates, b, sources)
    for name, result in results.items():
        if name in req.repos:
            for b in result.layers_removed:
                _add_sources(candidates, b, (name,))
    if req.gc:
        for b in inv.blobs:  # without images: one shared empty set, not one each
            candidates.setdefault(b, NO_IMAGES)
    return candidates


def keepers(
    inv: Inventory,
    req: Resolved,
    results: Mapping[str, RepoResult],
    reach: Reach,
    candidates: Mapping[Digest, Collection[str]],
) -> Keepers:
    """The candidate blobs that something that stays references, and by what."""
    found = Keepers(named=candidates)
    for name, repo in inv.repositories.items():
        if name not in req.repos:
            result = results.get(name, RepoResult())
            _repo_keepers(repo, result, reach, candidates, found)
    return found


def _repo_keepers(
    repo: Repository,
    result: RepoResult,
    reach: Reach,
    candidates: Collection[Digest],
    keepers: Keepers,
) -> None:
    name = repo.name
    if result.fail_closed:
        # It might reference any blob its layer links name: they all stay.
        for b in repo.layers:
            if b in candidates:
                keepers.add(b, (f"{name} (fail closed)",))
    for d in repo.revisions - result.removed.keys():
        m = reach.inv.manifests.get(d)
        hits = {d} if d in candidates else set()
        if m is not None:
            hits |= {b for b in m.blobs if b in candidates}
        for b in hits:
            keepers.add(b, reach.names(repo, d))
    for t in repo.tags.values():
        current = t.current
        if current is not None and current in candidates and current not in result.removed:
            keepers.add(current, (f"{name}:{t.name}",))
    for b in repo.layers - result.layers_removed:
        if b in candidates:
            keepers.add(b, (f"{name} (layer link)",))


def used_by_staying(
    inv: Inventory, repo: Repository, result: RepoResult
) -> dict[Digest, list[Digest]]:
    """blob -> the revisions of ``repo`` that stay and reference it."""
    used: dict[Digest, list[Digest]] = defaultdict(list)
    for d in repo.revisions - result.removed.keys():
        m = inv.manifests.get(d)
        if m is not None:  # an unreadable one lists nothing; its repository fails closed
            for b in m.blobs:
                used[b].append(d)
    return used


def empty_dirs(inv: Inventory, targets: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(folder, why) for every folder empty once ``targets`` go (--prune), outermost
    only; never a root, a folder not seen into, or one regplan does not know."""
    tree = inv.tree
    removed: set[str] = set()
    for path in targets:
        removed.update(tree.subtree(path))
    nonempty: dict[str, int] = defaultdict(int)
    dirs: list[str] = []
    blind = set(inv.blind)  # a folder that could not be listed is never empty
    unknown = tuple(  # nor is anything in a folder regplan does not know
        p.path
        for p in inv.problems
        if p.code in (ProblemCode.UNKNOWN_FOLDER, ProblemCode.UNKNOWN_ENTRY)
    )
    for path, kind in tree.items():
        if path in removed:
            continue
        if tokens.is_directory(kind) and path not in blind and not _inside(path, unknown):
            dirs.append(path)
        else:
            nonempty[_parent(path)] += 1
    dirs.sort(key=lambda p: p.count("/"), reverse=True)
    empty: set[str] = set()
    for d in dirs:
        if nonempty[d] == 0 and d not in ROOTS:
            empty.add(d)
        else:
            nonempty[_parent(d)] += 1
    had_removed = {_parent(p) for p in removed}
    for d in sorted(empty):
        if _parent(d) in empty:
            continue
        touched = any(p in had_removed for p in tree.subtree(d))
        yield d, "empty once this plan is applied" if touched else "empty directory"


def _add_sources(
    into: dict[Digest, Collection[str]], blob: Digest, sources: Collection[str]
) -> None:
    """``into[blob]`` gains ``sources``. Most blobs have one removed image: they share
    its revision's tuple; a set is made only for a blob of several (a base layer)."""
    have = into.get(blob)
    if have is None:  # a set may be another's (a whole repository's): not ours to grow
        into[blob] = sources if isinstance(sources, tuple) else tuple(sources)
    elif isinstance(have, set):
        have.update(sources)
    elif not all(s in have for s in sources):
        into[blob] = {*have, *sources}


def _inside(path: str, folders: tuple[str, ...]) -> bool:
    """``path`` is one of ``folders`` or lies below one."""
    return any(path == f or path.startswith(f + "/") for f in folders)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""
