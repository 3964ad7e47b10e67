"""Registry-wide mark and sweep: (inventory, request) -> targets with reasons. Pure.

The rules it applies, in order, are the package's docstring (regplan/decide/__init__.py);
reach.py follows manifests to what they reach, sweep.py frees blobs and empty folders.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

import attrs

from regplan.decide import reasons, stale, sweep
from regplan.decide.decision import Decision, Spooled, refs
from regplan.decide.reach import Reach, image_name
from regplan.decide.selection import Resolved
from regplan.decide.sweep import Marking, RepoResult
from regplan.plans.plan import Kept, PlanProblem, Target, TargetKind
from regplan.plans.spool import TargetSpool
from regplan.scan.inventory import Inventory, Problem, ProblemCode, Repository, subject_of
from regplan.scan.layout import (
    Digest,
    attached_kind,
    attached_subject,
    blob_dir,
    layer_dir,
    printable,
    repo_dir,
    revision_dir,
    short_of,
    split_repo,
    tag_dir,
    tag_index_dir,
    upload_dir,
)


def decide(
    inventory: Inventory, request: Resolved, *, prune: bool = False, memory: str | None = None
) -> Decision:
    """Everything the request removes, and what it touched but keeps."""
    spooled = decide_spooled(inventory, request, prune=prune, memory=memory)
    try:
        targets = tuple(spooled.targets.targets())
    finally:
        spooled.targets.close()
    return Decision(targets=targets, kept=spooled.kept, problems=spooled.problems)


def decide_spooled(
    inventory: Inventory, request: Resolved, *, prune: bool = False, memory: str | None = None
) -> Spooled:
    """``decide`` with the targets left in a spool (past ``spool.RUN`` of them, on disk);
    ``memory``: the mark and sweep's memory limit (mark.tables.memory_limit)."""
    p = _Planner(inventory, request, TargetSpool(), Marking(inventory, request, memory))
    try:
        p.run()
        if prune:
            p.prune()
    except BaseException:
        p.spool.close()
        raise
    finally:
        p.mark.close()
    kept = tuple(sorted(p.kept.values(), key=lambda k: k.path))
    problems = tuple(
        PlanProblem(path=pr.path, code=pr.code, message=pr.message)
        for pr in sorted({*inventory.problems, *p.problems})
    )
    return Spooled(targets=p.spool, kept=kept, problems=problems)


@attrs.frozen(kw_only=True)
class _Decided:
    """One repository's decision, before it becomes targets (see _Planner._revisions)."""

    removed_tags: list[str]
    reach: Mapping[Digest, tuple[str, ...]]
    consequence: Mapping[Digest, tuple[str, Digest | None]]
    """Everything the removed tags and untagged roots reach, with why (some of it stays)."""
    removed: Mapping[Digest, tuple[str, str]]
    """Revisions that go -> (why, the image whose removal took it)."""
    fail_closed: str


class _Planner:
    def __init__(self, inv: Inventory, req: Resolved, spool: TargetSpool, mark: Marking) -> None:
        self.inv = inv
        self.req = req
        self.mark = mark
        self.spool = spool
        """The targets, sized as they are decided: one repository's, then one blob
        shard's, come together, so the tree decompresses each part about once."""
        self.kept: dict[str, Kept] = {}
        self.problems: list[Problem] = []
        self.leftovers = stale.Pending(req.leftovers)
        self._holds_kept: set[str] | None = None
        self.removed_tags: dict[str, set[str]] = defaultdict(set)
        for repo, tag in req.tags:
            self.removed_tags[repo].add(tag)
        self.reach = Reach(inv, req.repos, self.removed_tags)
        self.results: dict[str, RepoResult] = {}
        self.pending: list[tuple[Repository, RepoResult, str]] = []  # see _layer_links
        self.blind_repos: dict[str, str] = {}
        """repository -> why it fails closed: something inside it cannot be seen."""
        self.blind_holders: set[str] = set()
        """Folders of repositories/ (by name) that hold something the walk could not see."""
        self.freeze = ""
        """Why no blob may be removed ("" when every repository was seen whole)."""
        self._blind_spots()
        self.protected: dict[str, dict[Digest, str]] = defaultdict(dict)
        """repository -> its protected manifests -> the --protect line."""
        for (repo_name, digest), why in req.protected.items():
            self.protected[repo_name][digest] = why

    def _blind_spots(self) -> None:
        for path in self.inv.blind:
            if not path.startswith("repositories/"):
                continue  # an unseen blob is no candidate; a manifest missing its data fails closed
            shown = printable(path)
            split = split_repo(path)
            if split is not None:
                repo, rest = split
                if rest.split("/", 1)[0] == "_uploads":
                    continue  # uploads reference nothing
                self.blind_repos.setdefault(repo, f"{shown} cannot be seen")
            names = path.split("/")[1:]
            self.blind_holders.update("/".join(names[:i]) for i in range(1, len(names)))
            self.freeze = self.freeze or shown

    def _unknown(self, digest: Digest) -> bool:
        m = self.inv.manifests.get(digest)
        return m is None or not m.known

    # -- the sweep ----------------------------------------------------------

    def run(self) -> None:
        for name, protected in sorted(self.protected.items()):
            for digest, why in sorted(protected.items()):
                self.keep(revision_dir(name, digest), why)
        for name, repo in self.inv.repositories.items():
            if name in self.req.repos:
                self._whole_repo(repo)
            elif name in self.req.untagged or name in self.removed_tags:
                self._revisions(repo)
            elif self.req.gc:
                self.results[name] = RepoResult(fail_closed=self._fail_closed(repo, set()))
        self._layer_links()
        for (name, uuid), reason in sorted(self.req.uploads.items()):
            self._target(upload_dir(name, uuid), TargetKind.UPLOAD, reason)
        if self.req.gc:
            self._gc_layer_links()
        self._blobs()
        for path, reason in sorted(self.leftovers.chosen.items()):
            self._target(path, TargetKind.LEFTOVER, reason)
        for path, reason in self.req.kept.items():
            self.keep(path, reason)
        self.problems.extend(self.req.problems)

    def _young(self, path: str) -> bool:
        cutoff = self.req.gc_cutoff
        return cutoff is not None and self.inv.mtimes.get(path, float("inf")) > cutoff

    def _gc_layer_links(self) -> None:
        """--gc: a layer link no manifest of its repository that stays uses goes."""
        free: dict[str, list[Digest]] = defaultdict(list)
        for name, b in self.mark.free_links(self.results):
            free[name].append(b)
        for name in self.inv.repositories:
            result = self.results.get(name)
            if result is None or name in self.req.repos:
                continue
            if result.fail_closed:
                self.keep(
                    repo_dir(name),
                    f"--gc sweeps none of its layer links: {result.fail_closed} (fail closed)",
                )
                continue
            for b in free.get(name, ()):
                path = layer_dir(name, b)
                if self._young(f"{path}/link"):
                    self.keep(path, "--gc: younger than --gc-min-age")
                    continue
                result.layers_removed.add(b)
                self._target(
                    path, TargetKind.LAYER_LINK, f"--gc: no manifest of {name} that stays uses it"
                )

    def keep(self, path: str, reason: str, names: Iterable[str] = ()) -> None:
        self.kept.setdefault(path, Kept(path=path, reason=reason, refs=refs(names)))

    def _whole_repo(self, repo: Repository) -> None:
        name = repo.name
        result = RepoResult(layers_removed=set(repo.layers))
        for d in repo.revisions:
            names = {f"{name}:{t.name}" for t in repo.tags.values() if t.current == d}
            result.removed[d] = names or {image_name(name, d)}
        self.results[name] = result
        reason = self.req.repos[name]
        images = [f"{name}:{t}" for t in repo.tags]
        parts = name.split("/")
        ancestors = ("/".join(parts[:i]) for i in range(1, len(parts)))
        if any(a in self.req.repos and self._whole_dir(a) for a in ancestors):
            return  # an ancestor's folder goes whole, this one with it
        if self._whole_dir(name):
            self._target(repo_dir(name), TargetKind.REPOSITORY, reason, images)
            return
        for sub in ("_manifests", "_layers", "_uploads"):
            path = f"{repo_dir(name)}/{sub}"
            if path in self.inv.tree:
                self._target(
                    path,
                    TargetKind.REPOSITORY,
                    f"{reason} (its folder also holds other repositories, which stay)",
                    images,
                )

    def _whole_dir(self, name: str) -> bool:
        """True when no repository that stays is nested inside ``name``."""
        if self._holds_kept is None:
            holds: set[str] = set(self.blind_holders)
            for other in self.inv.repositories:
                if other not in self.req.repos:
                    parts = other.split("/")
                    holds.update("/".join(parts[:i]) for i in range(1, len(parts)))
            self._holds_kept = holds
        return name not in self._holds_kept

    def _target(self, path: str, kind: TargetKind, reason: str, names: Iterable[str] = ()) -> None:
        self.leftovers.covered(path)
        # an empty folder's files, if any, are counted by the targets inside it
        size = 0 if kind is TargetKind.EMPTY_DIR else self.inv.tree.bytes_under(path)
        self.spool.add(Target(path=path, kind=kind, reason=reason, refs=refs(names), bytes=size))

    def _revisions(self, repo: Repository) -> None:
        """Tags, untagged manifests and what follows them out of one repository.

        Attached tags (signatures, attestations, SBOMs, referrers fallback tags)
        follow their subject: decided, then the attached tags of every removed
        subject join the removed tags and the repository is decided again, until
        nothing more follows (a signature of a signature)."""
        name = repo.name
        requested = set(self.removed_tags.get(name, ()))
        follow: dict[str, tuple[str, str]] = {}
        while True:
            self.removed_tags[name] = requested | follow.keys()
            self.reach.forget(name)
            decided = self._decide(repo)
            more = self._attached_going(repo, decided, follow)
            if not more:
                break
            follow.update(more)
        self._emit(repo, decided, follow)

    def _decide(self, repo: Repository) -> _Decided:
        name = repo.name
        removed_tags = sorted(self.removed_tags.get(name, ()))
        reach = self.reach.tag_reach(repo)
        protected = self.protected.get(name, {})
        roots: dict[Digest, str] = {}
        origin: dict[Digest, str] = {}
        for tag in removed_tags:
            current = repo.tags[tag].current
            if current is not None:
                roots.setdefault(current, f"tag {name}:{tag} removed and no kept tag reaches it")
                origin.setdefault(current, f"{name}:{tag}")
        if name in self.req.untagged:
            by = self.req.untagged[name]
            for d in sorted(repo.revisions - reach.keys() - protected.keys()):
                roots.setdefault(d, f"untagged: no tag reaches it ({by})")
                origin.setdefault(d, image_name(name, d))
        consequence = reasons.closure(self.reach, self.inv, repo, roots)
        fail_closed = self._fail_closed(repo, set(removed_tags))
        live_roots = set(reach) | (repo.revisions - consequence.keys()) | protected.keys()
        if fail_closed:
            live_roots = set(repo.revisions)
        live = set(self.reach.closure(repo, dict.fromkeys(live_roots, "")))
        removed = {
            d: (why, origin[_root_of(d, consequence)])
            for d, (why, _) in consequence.items()
            if d in repo.revisions and d not in live
        }
        return _Decided(
            removed_tags=removed_tags,
            reach=reach,
            consequence=consequence,
            removed=removed,
            fail_closed=fail_closed,
        )

    def _attached_going(
        self, repo: Repository, decided: _Decided, follow: Mapping[str, tuple[str, str]]
    ) -> dict[str, tuple[str, str]]:
        """Attached tags that go now, with why and the image they go with: their subject
        is removed, or (``--untagged``) their subject is in no repository at all."""
        name = repo.name
        out: dict[str, tuple[str, str]] = {}
        if decided.fail_closed:
            return out
        gone = set(decided.removed_tags)
        protected = self.protected.get(name, {})
        for tag in sorted(repo.tags):
            subject = subject_of(self.inv, repo, tag)
            if subject is None or tag in gone or tag in follow:
                continue
            current = repo.tags[tag].current
            if current in protected:  # a --protect line names this signature itself
                self.keep(tag_dir(name, tag), protected[current])
                continue
            what = attached_kind(tag) if attached_subject(tag) else "accessory"
            if subject in decided.removed:
                why, image = decided.removed[subject]
                out[tag] = (
                    f"{what} of {name}@{short_of(subject)}, which this plan removes ({why})",
                    image,
                )
            elif name in self.req.untagged and subject not in repo.revisions:
                elsewhere = [
                    r for r, rp in self.inv.repositories.items() if subject in rp.revisions
                ]
                if elsewhere:
                    self.keep(
                        tag_dir(name, tag),
                        f"{what} of {short_of(subject)}, which is in {elsewhere[0]}: "
                        "signatures kept in another repository (cosign's COSIGN_REPOSITORY) "
                        "are not orphans",
                    )
                else:
                    out[tag] = (
                        f"orphaned {what}: subject {subject} is in no repository "
                        f"({self.req.untagged[name]})",
                        image_name(name, subject),
                    )
        return out

    def _emit(
        self, repo: Repository, decided: _Decided, follow: Mapping[str, tuple[str, str]]
    ) -> None:
        name = repo.name
        for tag in decided.removed_tags:
            if (name, tag) in self.req.tags:
                self._target(tag_dir(name, tag), TargetKind.TAG, self.req.tags[(name, tag)])
            else:  # it follows an image: refs name that image
                reason, image = follow[tag]
                self._target(tag_dir(name, tag), TargetKind.TAG, reason, [image])
        reach = decided.reach
        if name in self.req.untagged:
            pointed = {t.current for t in repo.tags.values()}
            for d in sorted((repo.revisions & reach.keys()) - pointed):
                self.keep(
                    revision_dir(name, d),
                    f"untagged, but {reasons.reached_by(self.inv, repo, d, reach)}",
                    reach[d],
                )
        result = RepoResult(fail_closed=decided.fail_closed)
        for d in sorted(decided.consequence):
            if d not in repo.revisions:
                continue
            if d not in decided.removed:
                self._keep_revision(repo, d, reach, decided.fail_closed)
                continue
            why, source = decided.removed[d]
            result.removed[d] = (source,)  # a tuple: a set of one is 216 bytes
            self._target(revision_dir(name, d), TargetKind.REVISION, why, [source])
        self.results[name] = result
        self._history(repo, result, set(decided.removed_tags))
        self.pending.append((repo, result, decided.fail_closed))

    def _fail_closed(self, repo: Repository, removed_tags: set[str]) -> str:
        """Why this repository must keep all it might reference, or "" when it is sound."""
        name = repo.name
        if name in self.blind_repos:
            return self.blind_repos[name]
        if repo.unknown:
            return f"{printable(repo.unknown[0])} is not something distribution keeps there"
        uncertain = sorted(
            t.name for t in repo.tags.values() if t.current is None and t.name not in removed_tags
        )
        if uncertain:
            self.problems.append(
                Problem(
                    path=tag_dir(name, uncertain[0]),
                    code=ProblemCode.UNKNOWN_TAG_TARGET,
                    message=f"cannot tell what {name}:{uncertain[0]} points to: "
                    f"nothing {name} might reference is removed",
                )
            )
            return f"tag {name}:{uncertain[0]} has an unreadable link"
        unknown = sorted(d for d in repo.revisions if self._unknown(d))
        if unknown:
            # It might be an index of any revision here, or use any layer link.
            return f"manifest {short_of(unknown[0])} of {name} is unreadable"
        if repo.damaged:
            return f"{repo.damaged[0]} is damaged"
        return ""

    def _history(self, repo: Repository, result: RepoResult, removed_tags: set[str]) -> None:
        """Tags that stay lose the history entries of removed revisions."""
        for t in sorted(repo.tags.values(), key=lambda t: t.name):
            if t.name in removed_tags:
                continue
            for h in (h for h in t.history if h in result.removed):  # sorted
                self._target(
                    tag_index_dir(repo.name, t.name, h),
                    TargetKind.TAG_INDEX,
                    f"history entry of {repo.name}:{t.name} for removed revision {short_of(h)}",
                    result.removed[h],
                )

    def _keep_revision(
        self, repo: Repository, d: Digest, reach: Mapping[Digest, tuple[str, ...]], fail_closed: str
    ) -> None:
        path = revision_dir(repo.name, d)
        protected = self.protected.get(repo.name, {})
        if d in protected:
            self.keep(path, protected[d], reach.get(d, ()))
        elif d in reach:
            by = reasons.reached_by(self.inv, repo, d, reach)
            self.keep(path, f"still reached: {by}", reach[d])
        elif self._unknown(d):
            m = self.inv.manifests.get(d)
            error = m.error if m is not None else "not read"
            self.keep(path, f"manifest unreadable ({error}): kept with all it might reference")
        elif fail_closed:
            self.keep(path, f"kept because {fail_closed} (fail closed)")
        else:
            self.keep(path, "still reached from a revision that stays (index child or referrer)")

    def _layer_links(self) -> None:
        """The layer links the removed revisions used: each goes unless a revision of its
        repository that stays uses it (or the repository fails closed)."""
        asked = {r.name: sweep.link_candidates(self.inv, r, res) for r, res, _ in self.pending}
        needed = self.mark.needed_links(self.results, asked)
        for repo, result, fail_closed in self.pending:
            name, candidates = repo.name, asked[repo.name]
            for b in sorted(candidates):
                path = layer_dir(name, b)
                if fail_closed:
                    self.keep(path, f"kept because {fail_closed} (fail closed)")
                elif (name, b) in needed:
                    users = {n for d in needed[name, b] for n in self.reach.names(repo, d)}
                    self.keep(path, f"still used by revisions of {name} that stay", users)
                else:
                    result.layers_removed.add(b)
                    self._target(
                        path,
                        TargetKind.LAYER_LINK,
                        f"no revision of {name} that stays uses it",
                        candidates[b],
                    )
        self.pending.clear()

    def _blobs(self) -> None:
        candidates = sweep.blob_candidates(self.inv, self.req, self.results)
        if not candidates and not (self.req.gc and self.inv.blobs):
            return
        if self.freeze:
            self._freeze_blobs(candidates)
            return
        held = self.mark.held_named(self.results, candidates)
        for b, sources in sorted(candidates.items()):
            path = blob_dir(b)
            if b in held:
                names = (n for h in held[b] for n in sweep.holder_name(self.reach, self.inv, h))
                self.keep(path, "shared: still referenced", names)
            else:
                self._target(path, TargetKind.BLOB, "nothing that stays references it", sources)
        for b in self.mark.unheld(self.results) if self.req.gc else ():
            path = blob_dir(b)
            if self._young(f"{path}/data"):
                self.keep(path, "--gc: younger than --gc-min-age")
            else:
                self._target(path, TargetKind.BLOB, "--gc: no kept manifest references it")

    def _freeze_blobs(self, candidates: Mapping[Digest, Collection[str]]) -> None:
        """No blob goes: something under repositories/ cannot be seen and might use any."""
        why = f"{self.freeze} cannot be seen and might reference it (fail closed)"
        for b, sources in sorted(candidates.items()):
            self.keep(blob_dir(b), why, sources)
        self.keep(
            "blobs",
            f"no blob is removed: {self.freeze} cannot be seen, and what is there might "
            "reference any blob (fail closed); make it readable, or remove it, and plan again",
        )

    # -- prune --------------------------------------------------------------

    def prune(self) -> None:
        for d, reason in sweep.empty_dirs(self.inv, self.spool.paths()):
            self._target(d, TargetKind.EMPTY_DIR, f"--prune: {reason}")


def _root_of(d: Digest, via: Mapping[Digest, tuple[str, Digest | None]]) -> Digest:
    """Follow 'reached from' links back to the requested root."""
    while (parent := via[d][1]) is not None:
        d = parent
    return d
