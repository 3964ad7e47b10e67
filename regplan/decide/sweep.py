"""The sweep after the repositories are decided: which layer links and blobs go (nothing
that stays references them, in any repository: the mark, regplan.mark, in SQL), and
which folders are empty once the targets go."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import attrs

from regplan.decide.reach import Reach
from regplan.decide.selection import Resolved
from regplan.mark.tables import Mark
from regplan.scan import tokens
from regplan.scan.inventory import Inventory, ProblemCode, Repository
from regplan.scan.layout import ROOTS, Digest

Holder = tuple[str, int, Any]
"""(repository, how, via): what holds a blob (mark.tables.Mark.held_named)."""


@attrs.define
class RepoResult:
    removed: dict[Digest, Collection[str]] = attrs.field(factory=dict)
    """removed revision -> the images whose removal took it."""
    layers_removed: set[Digest] = attrs.field(factory=set)
    fail_closed: str = ""
    """Why nothing this repository might reference may be removed ("" when it is sound)."""


def blob_candidates(
    inv: Inventory, req: Resolved, results: Mapping[str, RepoResult]
) -> dict[Digest, Collection[str]]:
    """Blobs (with data) the request may free, with the images whose removal freed them.

    With --gc every other blob is a candidate too: the mark finds those (Marking.unheld).
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
    return {b: sources for b, sources in candidates.items() if b in inv.blobs}


class Marking:
    """The registry-wide mark and sweep (regplan.mark), started the first time a step
    needs it: before each step, the decisions so far are loaded into its tables."""

    def __init__(self, inv: Inventory, req: Resolved, memory: str | None) -> None:
        self.inv = inv
        self.req = req
        self.memory = memory
        self._mark: Mark | None = None

    def _ready(self, results: Mapping[str, RepoResult]) -> Mark:
        if self._mark is None:
            self._mark = Mark(self.inv, limit=self.memory)
        self._mark.decided(
            removed=((n, d) for n, r in results.items() for d in r.removed),
            layers_gone=((n, b) for n, r in results.items() for b in r.layers_removed),
            whole=(n for n in self.req.repos if n in self.inv.repositories),
            failed=(n for n, r in results.items() if r.fail_closed),
            touched=results,
        )
        return self._mark

    def needed_links(
        self, results: Mapping[str, RepoResult], asked: Mapping[str, Collection[Digest]]
    ) -> Mapping[tuple[str, Digest], list[Digest]]:
        """Of the layer links ``asked`` (repository -> blobs), those a revision of their
        repository that stays uses -> those revisions."""
        pairs = [(n, b) for n, blobs in asked.items() for b in blobs]
        return self._ready(results).needed_links(pairs) if pairs else {}

    def free_links(self, results: Mapping[str, RepoResult]) -> list[tuple[str, Digest]]:
        """--gc: (repository, blob) of the layer links no revision that stays there uses."""
        return self._ready(results).free_links()

    def held_named(
        self, results: Mapping[str, RepoResult], named: Collection[Digest]
    ) -> Mapping[Digest, list[Holder]]:
        """Of the blobs the request freed, those something that stays references -> what."""
        return self._ready(results).held_named(named)

    def unheld(self, results: Mapping[str, RepoResult]) -> Iterator[Digest]:
        """--gc: the blobs nothing references, but those ``held_named`` was asked of
        (call it first). The last step: the database closes before the answer is
        taken, so that its memory is gone while the blobs become targets."""
        mark = self._mark or self._ready(results)
        unheld = mark.unheld()
        self.close()
        return unheld

    def close(self) -> None:
        if self._mark is not None:
            self._mark.close()
            self._mark = None


def holder_name(reach: Reach, inv: Inventory, holder: Holder) -> Iterable[str]:
    """How a reason names what holds a blob (see mark.sql.NAMED_HOLDERS)."""
    name, how, what = holder
    if how == 0:
        return reach.names(inv.repositories[name], what)
    if how == 1:
        return (f"{name}:{what}",)
    return (f"{name} (layer link)" if how == 2 else f"{name} (fail closed)",)


def link_candidates(inv: Inventory, repo: Repository, result: RepoResult) -> dict[Digest, set[str]]:
    """The layer links of ``repo`` its removed revisions used -> the images that took them."""
    candidates: dict[Digest, set[str]] = defaultdict(set)
    for d, sources in result.removed.items():
        m = inv.manifests.get(d)
        if m is not None:
            for b in m.blobs:
                if b in repo.layers:
                    candidates[b].update(sources)
    return candidates


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
