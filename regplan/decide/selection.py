"""What the user asked for, and its resolution against an inventory (pure).

``resolve`` turns globs, retention rules and ages into concrete names: whole
repositories, tags, repositories to clear of untagged manifests, uploads; and
it notes what a rule touched but keeps.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import attrs

from regplan.decide import flags, pulled, rules, stale
from regplan.decide.ages import parse_age
from regplan.decide.flags import Retention
from regplan.decide.policy import Keep, Policy
from regplan.decide.protect import Protect
from regplan.errors import SelectionError
from regplan.pulls.facts import Looks, Pulls, Seen
from regplan.scan.inventory import Inventory, Problem, ProblemCode, Repository, subject_of
from regplan.scan.layout import (
    Digest,
    attached_subject,
    printable,
    repo_dir,
    tag_dir,
)


@attrs.frozen(kw_only=True)
class ImageSpec:
    """``--image REPO[:TAG]``; both parts are shell-style globs."""

    repo: str
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageSpec:
        repo, sep, tag = text.rpartition(":")
        if sep and repo and tag and "/" not in tag:
            return cls(repo=repo, tag=tag)
        if not text or text.endswith(":"):
            raise SelectionError(f"--image {text!r}: expected REPO or REPO:TAG")
        return cls(repo=text, tag=None)

    def __str__(self) -> str:
        return self.repo if self.tag is None else f"{self.repo}:{self.tag}"


@attrs.frozen(kw_only=True)
class Selection:
    images: tuple[ImageSpec, ...] = ()
    untagged: tuple[str, ...] = ()
    prune: bool = False
    retention: Retention = attrs.field(factory=Retention)
    gc: bool = False
    gc_min_age: str | None = None
    uploads_older_than: str | None = None
    leftovers_older_than: str | None = None
    protect: tuple[Protect, ...] = ()
    policy: Policy | None = None
    """A cleanup policy's rules (instead of --image, --untagged and retention)."""
    pulls: Pulls | None = None
    """The pull records (``--pulls``) rules that keep by pulls read."""

    @property
    def empty(self) -> bool:
        return not (
            self.images
            or self.untagged
            or self.prune
            or self.gc
            or self.uploads_older_than
            or self.leftovers_older_than
            or self.policy
        )

    @property
    def created(self) -> bool:
        """Whether deciding reads images' config ``created`` time."""
        by_created = self.policy is not None and self.policy.by_created
        return self.retention.sort_by == "created" or by_created

    @property
    def ages(self) -> bool:
        """Whether deciding reads every link's and blob's time (not only tags')."""
        untagged = self.policy is not None and self.policy.untagged_ages
        return self.gc_min_age is not None or untagged


@attrs.frozen(kw_only=True)
class Resolved:
    """The concrete request."""

    repos: Mapping[str, str] = attrs.field(factory=dict)
    """repository -> reason it goes whole."""
    tags: Mapping[tuple[str, str], str] = attrs.field(factory=dict)
    """(repository, tag) -> reason it goes."""
    untagged: Mapping[str, str] = attrs.field(factory=dict)
    """repository -> what selected it for its untagged manifests (``--untagged PATTERN``,
    a policy rule)."""
    uploads: Mapping[tuple[str, str], str] = attrs.field(factory=dict)
    """(repository, upload uuid) -> reason it goes."""
    leftovers: Mapping[str, str] = attrs.field(factory=dict)
    """path of a leftover temporary file -> reason it goes."""
    gc: bool = False
    gc_cutoff: float | None = None
    """With --gc-min-age: blobs and layer links modified after this (epoch seconds) stay."""
    kept: Mapping[str, str] = attrs.field(factory=dict)
    """path -> why a rule that touched it keeps it."""
    problems: tuple[Problem, ...] = ()
    protected: Mapping[tuple[str, Digest], str] = attrs.field(factory=dict)
    """(repository, manifest digest) -> the --protect line that keeps it with all it needs."""
    protect_matches: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    """--protect source (FILE:LINE) -> the images (repo@digest) it matched; empty: none."""
    selected: Mapping[str, str] = attrs.field(factory=dict)
    """repository -> the first option that selected it (``--image team/*``): a
    repository no option selects is untouched by the request."""
    tag_notes: Mapping[tuple[str, str], str] = attrs.field(factory=dict)
    """(repository, tag) -> why a rule that looked at the tag keeps it
    (``rank 2 of keep-last 3 by push time``, ``not matched by --match …``)."""
    decided: Mapping[tuple[str, str], tuple[str, int | None]] = attrs.field(factory=dict)
    """(repository, tag) -> the retention rule that decided it and its rank there."""
    pulls: Pulls | None = None
    pulled: Mapping[tuple[str, str], Seen] = attrs.field(factory=dict)
    """(repository, tag) -> its pulls, of the tags a rule judged by pulls."""


def _match_repos(pattern: str, names: list[str], flag: str, strict: bool = True) -> list[str]:
    found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not found and strict:
        near = nearest(pattern, names)
        if near:
            hint = f"(nearest: {', '.join(near)})"
        elif names:
            hint = f", and none is near it ({len(names)} repositories)"
        else:
            hint = "(the storage holds no repository)"
        raise SelectionError(
            f"{flag} {pattern}: no repository matches{' ' * (hint[0] == '(')}{hint}"
        )
    return found


def nearest(pattern: str, names: list[str], n: int = 5) -> list[str]:
    """The names nearest ``pattern`` (a typo), nearest first (difflib's ratio over 0.6).
    A glob is compared by what it spells out before its first wildcard, with as much of
    each name (``tema/*``: ``tema/`` against ``team/``, ``old/``)."""
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    if literal == pattern or not literal:
        spelled = pattern.replace("*", "").replace("?", "")
        return difflib.get_close_matches(spelled, names, n=n, cutoff=0.6)
    by_prefix: dict[str, list[str]] = {}
    for name in names:
        by_prefix.setdefault(name[: len(literal)], []).append(name)
    close = difflib.get_close_matches(literal, list(by_prefix), n=n, cutoff=0.6)
    return [name for prefix in close for name in by_prefix[prefix]][:n]


class _Resolver:
    def __init__(
        self, selection: Selection, inventory: Inventory, now: datetime, strict: bool = True
    ) -> None:
        self.sel = selection
        self.strict = strict
        self.inv = inventory
        self.now = now
        self.names = sorted(inventory.repositories)
        self.repos: dict[str, str] = {}
        self.tags: dict[tuple[str, str], str] = {}
        self.kept: dict[str, str] = {}
        self.selected: dict[str, str] = {}
        self.notes: dict[tuple[str, str], str] = {}
        self.decided: dict[tuple[str, str], tuple[str, int | None]] = {}
        self.problems: list[Problem] = []
        self.looks = None if selection.pulls is None else Looks(selection.pulls, inventory)
        self.pulled: dict[tuple[str, str], Seen] = {}
        self.uncovered: set[ImageSpec] = set()
        selection.retention.check()
        self.protected: dict[tuple[str, Digest], str] = {}
        self.protected_tags: dict[tuple[str, str], str] = {}
        self.protect_matches: dict[str, tuple[str, ...]] = {}
        for entry in selection.protect:
            self._protect(entry)

    def _protect(self, entry: Protect) -> None:
        """What a --protect line names: the manifests, and every tag pointing at them."""
        why = f"protected by {entry.source} ({entry.ref})"
        repos = [entry.repo] if entry.repo else self.names
        found: list[tuple[str, Digest]] = []
        for name in repos:
            repo = self.inv.repositories.get(name)
            if repo is None:
                continue
            if entry.digest is not None:
                if entry.digest in repo.revisions:
                    found.append((name, entry.digest))
                continue
            tag = repo.tags.get(entry.tag or "")
            if tag is not None:
                self.protected_tags.setdefault((name, tag.name), why)
                if tag.current is not None:
                    found.append((name, tag.current))
        for name, digest in found:
            self.protected.setdefault((name, digest), why)
            for tag in self.inv.repositories[name].tags.values():
                if tag.current == digest or attached_subject(tag.name) == digest:
                    self.protected_tags.setdefault((name, tag.name), why)
        self.protect_matches[entry.source] = tuple(f"{r}@{d}" for r, d in found)

    def images(self) -> None:
        retention = self.sel.retention.active
        for spec in self.sel.images:
            for repo in _match_repos(spec.repo, self.names, "--image", self.strict):
                self.selected.setdefault(repo, f"--image {spec}")
                available = sorted(self.inv.repositories[repo].tags)
                if spec.tag is None and not retention:
                    self.repos.setdefault(repo, f"requested: --image {spec}")
                    continue
                pattern = spec.tag or "*"
                found = [t for t in available if fnmatch.fnmatchcase(t, pattern)]
                for other in available:
                    repo_ = self.inv.repositories[repo]
                    if other not in found and subject_of(self.inv, repo_, other) is None:
                        self.notes.setdefault((repo, other), f"not matched by --image {spec}")
                if (
                    not found
                    and spec.tag
                    and self.strict
                    and not any(c in spec.repo for c in "*?[")
                ):
                    hint = ", ".join(available[:10]) + (" …" if len(available) > 10 else "")
                    raise SelectionError(
                        f"--image {spec}: {repo} has no tag matching {spec.tag!r} "
                        f"(tags: {hint or 'none'})"
                    )
                if retention:
                    self.retain(self.inv.repositories[repo], found, spec)
                else:
                    for tag in found:
                        self.tags.setdefault((repo, tag), f"requested: --image {spec}")
        if self.strict and self.sel.images and not retention and not self.repos and not self.tags:
            raise SelectionError(
                "--image: no tag matches " + ", ".join(str(s) for s in self.sel.images)
            )

    def retain(self, repo: Repository, candidates: list[str], spec: ImageSpec) -> None:
        """The flags' rule over ``candidates`` (the tags ``spec`` names in ``repo``),
        decided by the rules engine, in the flags' words."""
        r = self.sel.retention
        rule = flags.rule(r, spec.repo, spec.tag, f"--image {spec}")
        images = [t for t in candidates if subject_of(self.inv, repo, t) is None]
        judged = rules.judge(rule, repo, images, self.inv.created, self.now, self.looks)
        if judged.uncovered is not None and spec not in self.uncovered:  # once per --image
            self.uncovered.add(spec)
            self.problems.append(rules.uncovered(f"--image {spec}", repo.name, judged.uncovered))
        for j in judged.ranked:
            self.decided[(repo.name, j.tag)] = (f"--image {spec}", j.rank)
            if j.pull is not None and j.pull.seen is not None:
                self.pulled[(repo.name, j.tag)] = j.pull.seen
        for tag, field in judged.skipped:
            self.notes[(repo.name, tag)] = _left_out(r, field, spec)
        going: dict[str, str] = {}
        for j in judged.ranked:
            if j.when is None:  # what regplan cannot date, it keeps
                self._undated(repo, j.tag, j.said)
            elif j.held is not None and j.held[0] in rules.CHANGING:
                self.notes[(repo.name, j.tag)] = _held(r, j)
            elif j.held is not None:  # a name the flags keep (--keep)
                self.kept[tag_dir(repo.name, j.tag)] = _held(r, j)
            elif (repo.name, j.tag) in self.protected_tags:
                self.kept[tag_dir(repo.name, j.tag)] = self.protected_tags[(repo.name, j.tag)]
            else:
                going[j.tag] = _going(r, j, spec)
        every = {t for t in repo.tags if subject_of(self.inv, repo, t) is None}
        if going and set(going) >= every and not r.allow_empty_repos:
            first = judged.ranked[0].tag
            newest = first if first in going else min(going)
            del going[newest]
            self.kept[tag_dir(repo.name, newest)] = (
                f"retention would remove every tag of {repo.name}; kept the newest "
                "(--allow-empty-repos removes all)"
            )
        for name, reason in going.items():
            self.tags.setdefault((repo.name, name), reason)

    def _undated(self, repo: Repository, tag: str, said: str) -> None:
        by = " (--sort-by created)" if self.sel.retention.sort_by == "created" else ""
        why = f"{said}: cannot tell its age{by}; kept"
        self.kept[tag_dir(repo.name, tag)] = why
        self.problems.append(
            Problem(path=tag_dir(repo.name, tag), code=ProblemCode.UNREADABLE, message=why)
        )

    def follow(self, outcome: rules.Outcome, untagged: dict[str, str]) -> None:
        """What a policy's rules decided, as the flags' decisions are held."""
        self.tags.update(outcome.tags)
        self.notes.update(outcome.notes)
        self.decided.update(outcome.decided)
        self.pulled.update(outcome.pulled)
        self.selected.update(outcome.selected)
        self.problems += outcome.problems
        untagged.update(outcome.untagged)
        for key, why in outcome.young.items():
            self.protected.setdefault(key, why)

    def spare_protected(self, repos: dict[str, str], tags: dict[tuple[str, str], str]) -> None:
        """Protected images survive the request: their tags are not removed, and a
        repository holding one is not removed whole (its other tags go instead)."""
        holding = {repo for repo, _ in self.protected}
        for name in sorted(holding & repos.keys()):
            first = min(why for (r, _), why in self.protected.items() if r == name)
            self._spare_repository(
                repos, tags, name, f"holds an image {first}", "it holds a protected image"
            )
        for key, why in self.protected_tags.items():
            if tags.pop(key, None) is not None:
                self.kept[tag_dir(*key)] = why

    def spare_unknown(self, repos: dict[str, str], tags: dict[tuple[str, str], str]) -> None:
        """A repository holding what distribution does not keep there is not removed
        whole (its tags go instead, and it fails closed: nothing it links goes)."""
        for name in sorted(repos):
            unknown = self.inv.repositories[name].unknown
            if not unknown:
                continue
            holds = f"holds {printable(unknown[0])}, which distribution does not keep there"
            self._spare_repository(repos, tags, name, holds, "fail closed", closed=True)

    def _spare_repository(
        self,
        repos: dict[str, str],
        tags: dict[tuple[str, str], str],
        name: str,
        holds: str,
        because: str,
        *,
        closed: bool = False,
    ) -> None:
        """A repository asked for whole stays: its tags go instead, and the kept list
        says what it holds."""
        reason = repos.pop(name)
        stays = "the repository stays (fail closed)" if closed else "the repository stays"
        self.kept[repo_dir(name)] = f"{reason}, but it {holds}: {stays}"
        for tag in self.inv.repositories[name].tags:
            tags.setdefault((name, tag), f"{reason} (the repository stays: {because})")


def _by(r: Retention) -> str:
    return "push time" if r.sort_by == "pushed" else "created time"


def _left_out(r: Retention, field: str, spec: ImageSpec) -> str:
    """Why the flags' rule does not look at a tag (its ``Rule`` field that leaves it out)."""
    if field == "tags_regex":
        return f"not matched by --match {r.match}"
    if field == "exclude_tags_regex":
        return f"excluded by --exclude {r.exclude}"
    return f"not matched by --image {spec}"


def _held(r: Retention, j: rules.Judged) -> str:
    """Why the flags keep a tag: within keep-last, not old enough, or the flag (a keep
    criterion's, by the table) that its name matches."""
    name, what = j.held if j.held is not None else ("", "")
    if name == "newest":
        return f"rank {j.rank} of keep-last {r.keep_last} by {_by(r)}{j.ties}"
    if name == "within":
        return f"newer than --older-than {r.older_than}: {j.said}"
    if name in pulled.BY_PULLS:
        return pulled.held(Keep(pulled_within=r.pulled_within), name, what, j.pull)
    flag = next(f for f in flags.FLAGS if f.rule == f"keep.{name}")
    return f"matches {flag.option} {getattr(r, flag.field)}"


def _going(r: Retention, j: rules.Judged, spec: ImageSpec) -> str:
    """Why the flags remove a tag."""
    why = []
    if j.beyond:
        why.append(f"beyond keep-last {r.keep_last}: rank {j.rank} by {_by(r)}{j.ties}")
    if j.old:
        why.append(f"older than {r.older_than}: {j.said}")
    why += pulled.not_held(Keep(pulled_within=r.pulled_within), j.pull)
    if not why:
        why.append(f"matched --image {spec}" + (f" --match {r.match}" if r.match else ""))
    return " and ".join(why)


def _whole_repositories(
    inventory: Inventory,
    repos: dict[str, str],
    tags: dict[tuple[str, str], str],
    *,
    by_policy: bool,
) -> None:
    """Removing the last image tag removes the repository, as the one-file script does
    (its signatures go with it), unless a signature there belongs to another repository."""
    gone_by_repo: dict[str, set[str]] = {}
    for r, t in tags:
        gone_by_repo.setdefault(r, set()).add(t)
    for repo, gone in gone_by_repo.items():
        if repo in repos:
            continue
        inv_repo = inventory.repositories[repo]
        images = {t for t in inv_repo.tags if attached_subject(t) is None}
        foreign = [
            t
            for t in inv_repo.tags
            if t not in gone
            and (s := attached_subject(t)) is not None
            and s not in inv_repo.revisions
        ]
        if images <= gone and not foreign:
            listed = ", ".join(sorted(gone))
            repos[repo] = f"last tag removed ({listed}): the whole repository goes"
            if by_policy:  # which rule took them
                repos[repo] += f"; {tags[(repo, min(gone))]}"


def resolve(
    selection: Selection, inventory: Inventory, now: datetime | None = None, *, strict: bool = True
) -> Resolved:
    """Turn globs and rules into names; a pattern that matches nothing is an error naming
    it (without ``strict``, when an apply decides a plan again, it selects nothing)."""
    now = now or datetime.now(UTC)
    res = _Resolver(selection, inventory, now, strict)
    res.images()
    untagged: dict[str, str] = {}
    if selection.policy is not None:
        res.follow(rules.apply(selection.policy, inventory, now, res.looks), untagged)
    for pattern in selection.untagged:
        for repo in _match_repos(pattern, res.names, "--untagged", strict):
            untagged.setdefault(repo, f"--untagged {pattern}")
            res.selected.setdefault(repo, f"--untagged {pattern}")
    uploads, upload_problems = stale.uploads(selection.uploads_older_than, inventory, now, res.kept)
    res.problems += upload_problems
    leftovers = stale.leftovers(selection.leftovers_older_than, inventory, now, res.kept)
    repos, tags = res.repos, res.tags
    _whole_repositories(inventory, repos, tags, by_policy=selection.policy is not None)
    res.spare_protected(repos, tags)
    res.spare_unknown(repos, tags)
    gc_cutoff = None
    if selection.gc_min_age:
        gc_cutoff = (now - parse_age(selection.gc_min_age)).timestamp()
    return Resolved(
        repos=repos,
        tags={k: v for k, v in tags.items() if k[0] not in repos},
        untagged={k: v for k, v in untagged.items() if k not in repos},
        uploads={k: v for k, v in uploads.items() if k[0] not in repos},
        leftovers=leftovers,
        gc=selection.gc,
        gc_cutoff=gc_cutoff,
        kept=res.kept,
        problems=tuple(res.problems),
        protected=res.protected,
        protect_matches=res.protect_matches,
        selected=res.selected,
        tag_notes=res.notes,
        decided=res.decided,
        pulls=selection.pulls,
        pulled=res.pulled,
    )
