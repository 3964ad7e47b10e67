"""The retention engine (pure): ``judge`` says, for one rule in one repository, which
tags it selects, their ranks and times, and which keep criterion (``CRITERIA``) keeps
each. A policy's rules (``apply``) and ``plan``'s flags (a one-rule policy per
``--image``, decide.flags and decide.selection) are both decided by it.

A policy: a tag is removed when at least one rule selects it and no rule that selects
it keeps it (regplan.policy says how rules combine). What cannot be dated
(``by: created`` without a config time) is kept.

Ranks are newest first; tags with the same time rank by tag name in ASCII order (``a``
before ``b``, ``v1.10`` before ``v1.9``), and a reason that gives such a rank says so
(``rank 1 of keep newest 2 by push time (same push time as b: ties rank by tag name in
ASCII order)``). A repository's newest tag is its rank 1 by push time, by the same rule.
A tag several rules keep names first a rule that keeps it by what it is (``all``,
``tags``, ``regex``), which no later push changes, then the rest in the policy's order.

A new keep criterion is a ``Keep`` field (decide.policy), its entry in ``CRITERIA``
and its key in ``policy.schema.json``; a flag for it is a row of ``decide.flags.FLAGS``
and a field of the plan's ``SelectionRecord``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime

import attrs

from regplan.decide import patterns, pulled
from regplan.decide.ages import after, day, parse_age, tag_time
from regplan.decide.policy import Keep, Origin, Policy, Rule
from regplan.decide.pulled import Pulled
from regplan.pulls.facts import Looks, Seen
from regplan.scan.inventory import Inventory, Problem, ProblemCode, Repository, Tag, subject_of
from regplan.scan.layout import Digest, repo_dir, revision_dir, tag_dir


@attrs.frozen
class Verdict:
    rule: Rule
    keeps: bool
    why: str
    lasting: bool = False
    """It keeps the tag by what the tag is (not by its rank or age, which pushes change)."""
    rank: int | None = None

    def __str__(self) -> str:
        return f"{self.rule.label}: {self.why}"


@attrs.define
class RuleCount:
    """What one rule selects on a registry (``policy check --root``)."""

    rule: Rule
    repositories: int = 0
    tags: int = 0
    removes: int = 0
    by_pulls: int = 0
    """Tags a criterion by pulls keeps (and no criterion before it)."""


@attrs.define
class Outcome:
    tags: dict[tuple[str, str], str] = attrs.Factory(dict)
    """(repository, tag) -> why it goes."""
    notes: dict[tuple[str, str], str] = attrs.Factory(dict)
    """(repository, tag) -> why it stays."""
    selected: dict[str, str] = attrs.Factory(dict)
    untagged: dict[str, str] = attrs.Factory(dict)
    young: dict[tuple[str, Digest], str] = attrs.Factory(dict)
    """Untagged manifests a rule's ``untagged`` age keeps (younger, or undated)."""
    problems: list[Problem] = attrs.Factory(list)
    counts: list[RuleCount] = attrs.Factory(list)
    decided: dict[tuple[str, str], tuple[str, int | None]] = attrs.Factory(dict)
    """(repository, tag) -> the rule that decided it and its rank there."""
    pulled: dict[tuple[str, str], Seen] = attrs.Factory(dict)
    """(repository, tag) -> its pulls, of the tags a rule judged by pulls."""


def selects_repository(rule: Rule, name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in rule.repositories) and not any(
        fnmatch.fnmatchcase(name, g) for g in rule.exclude
    )


def _skipped_by(rule: Rule, tag: str) -> str | None:
    """The ``Rule`` field that leaves ``tag`` out of ``rule`` (None: the rule selects it)."""
    if not any(fnmatch.fnmatchcase(tag, g) for g in rule.tags):
        return "tags"
    if rule.tags_regex is not None and not patterns.whole(rule.tags_regex, tag):
        return "tags_regex"
    if rule.exclude_tags_regex is not None and patterns.whole(rule.exclude_tags_regex, tag):
        return "exclude_tags_regex"
    return None


@attrs.frozen(kw_only=True)
class Facts:
    """What a keep criterion may look at: the tag, its rank among the tags the rule
    selects in its repository (newest first), its time, the ``within`` cutoff, and its
    pulls."""

    tag: Tag
    rank: int
    when: float
    cutoff: float | None
    pull: Pulled | None = None
    """Its pulls, when the rule keeps by pulls (decide.pulled)."""


def _all(k: Keep, f: Facts) -> str | None:
    return "" if k.all else None


def _newest(k: Keep, f: Facts) -> str | None:
    return "" if k.newest is not None and f.rank <= k.newest else None


def _within(k: Keep, f: Facts) -> str | None:
    return "" if f.cutoff is not None and f.when >= f.cutoff else None


def _tags(k: Keep, f: Facts) -> str | None:
    return next((g for g in k.tags if fnmatch.fnmatchcase(f.tag.name, g)), None)


def _regex(k: Keep, f: Facts) -> str | None:
    return k.regex if k.regex is not None and patterns.whole(k.regex, f.tag.name) else None


def _pulled_within(k: Keep, f: Facts) -> str | None:
    return pulled.within(f.pull) if k.pulled_within is not None else None


def _most_recently_pulled(k: Keep, f: Facts) -> str | None:
    n = k.most_recently_pulled
    return pulled.most_recent(f.pull, n) if n is not None else None


CRITERIA: tuple[tuple[str, Callable[[Keep, Facts], str | None]], ...] = (
    ("all", _all),
    ("newest", _newest),
    ("within", _within),
    ("pulled_within", _pulled_within),
    ("most_recently_pulled", _most_recently_pulled),
    ("tags", _tags),
    ("regex", _regex),
)
"""Every keep criterion, by its ``Keep`` field, in the order a reason names them: each
says what in it holds (a matching glob, ``""``), or None."""


@attrs.frozen(kw_only=True)
class Judged:
    """What a rule's keep says of one tag it selects."""

    tag: str
    rank: int
    when: float | None
    """None: it cannot be dated (kept)."""
    said: str
    held: tuple[str, str] | None = None
    """(the criterion that keeps it, what in it holds); None: no criterion keeps it."""
    beyond: bool = False
    """Ranked beyond ``keep.newest``."""
    old: bool = False
    """Older than ``keep.within``."""
    tied: tuple[str, ...] = ()
    """The other tags with the same time (their ranks are by name)."""
    pull: Pulled | None = None
    """Its pulls, when the rule keeps by pulls."""

    @property
    def ties(self) -> str:
        """What a reason giving the rank adds: ``" (same push time as b, c: ties …)"``."""
        if not self.tied:
            return ""
        shown = ", ".join(self.tied[:3]) + (
            f" and {len(self.tied) - 3} more" if len(self.tied) > 3 else ""
        )
        kind = "push" if self.said.startswith("pushed") else "created"
        return f" (same {kind} time as {shown}: {TIES})"


CHANGING = ("newest", "within", *pulled.BY_PULLS)
"""The criteria whose hold changes with time, pushes and pulls (the others keep a tag by
what it is)."""

TIES = "ties rank by tag name in ASCII order"
"""The one rule that breaks a tie in rank (tags with the same time), as reasons say it."""


@attrs.frozen(kw_only=True)
class Judgement:
    ranked: tuple[Judged, ...]
    """The tags the rule selects, newest first (ties by name)."""
    skipped: tuple[tuple[str, str], ...]
    """(tag, the ``Rule`` field that leaves it out) of the tags it does not select."""
    uncovered: str | None = None
    """Why the pull records cannot judge the rule's window (it then keeps every tag it
    judges by pulls); None: they can, or the rule does not keep by pulls."""


def _dated(
    rule: Rule, tag: Tag, created: Mapping[Digest, str], by: str, now: float
) -> tuple[float, float | None, str]:
    """The rank key (larger: newer), the time (None: it cannot be dated, or it is later
    than ``now``) and how a reason says it."""
    if rule.origin is Origin.FLAGS:  # a tag without a current link: by its push
        by = by if tag.current is not None else "pushed"
        when, said = tag_time(tag, created, by, now=now)
        return (float("-inf") if when is None else when), when, said
    when, said = tag_time(tag, created, by, now=now)
    return (when or float("-inf")), when, said


def judge(
    rule: Rule,
    repo: Repository,
    images: list[str],
    created: Mapping[Digest, str],
    now: datetime,
    pulls: Looks | None = None,
) -> Judgement:
    """The one retention engine: which of ``images`` (image tags of ``repo``) ``rule``
    selects, their ranks and times, and for each the keep criterion that holds
    (``pulls``: the pull records, for a rule that keeps by pulls)."""
    k = rule.keep or Keep()
    left_out = {t: _skipped_by(rule, t) for t in images}
    skipped = [(t, why) for t, why in left_out.items() if why is not None]
    chosen = [t for t, why in left_out.items() if why is None]
    timed = {t: _dated(rule, repo.tags[t], created, k.by, now.timestamp()) for t in chosen}
    ranked = sorted(chosen, key=lambda t: (-timed[t][0], t))
    cutoff = (now - parse_age(k.within)).timestamp() if k.within else None
    seen = pulled.of(rule, k, repo, ranked, pulls, now)
    same: dict[float, list[str]] = {}
    for name in ranked:
        same.setdefault(timed[name][0], []).append(name)
    out = []
    for rank, name in enumerate(ranked, 1):
        _, when, said = timed[name]
        if when is None:
            out.append(Judged(tag=name, rank=rank, when=None, said=said))
            continue
        tied = tuple(t for t in same[timed[name][0]] if t != name)
        pull = seen.tags.get(name)
        facts = Facts(tag=repo.tags[name], rank=rank, when=when, cutoff=cutoff, pull=pull)
        held = next(
            ((c, said_) for c, test in CRITERIA if (said_ := test(k, facts)) is not None), None
        )
        beyond = k.newest is not None and rank > k.newest
        old = cutoff is not None and when < cutoff
        out.append(
            Judged(
                tag=name,
                rank=rank,
                when=when,
                said=said,
                held=held,
                beyond=beyond,
                old=old,
                tied=tied,
                pull=pull,
            )
        )
    return Judgement(ranked=tuple(out), skipped=tuple(skipped), uncovered=seen.uncovered)


def _words(k: Keep, j: Judged) -> str:
    """A policy's reason for ``j``: the criterion that keeps it, or why none does."""
    by = "push time" if k.by == "pushed" else "created time"
    if j.held is not None:
        name, what = j.held
        return {
            "all": "keeps every tag it selects",
            "newest": f"rank {j.rank} of keep newest {k.newest} by {by}{j.ties}",
            "within": f"within {k.within}: {j.said}",
            "tags": f"matches keep tags {what}",
            "regex": f"matches keep regex {what}",
        }.get(name) or pulled.held(k, name, what, j.pull)
    why = []
    if k.newest is not None:
        why.append(f"rank {j.rank} > keep newest {k.newest} by {by}{j.ties}")
    if k.within is not None:
        why.append(f"not within {k.within}: {j.said}")
    why += pulled.not_held(k, j.pull)
    return " and ".join(why) or "selected, and no keep criterion holds"


class _Apply:
    def __init__(self, policy: Policy, inv: Inventory, now: datetime, pulls: Looks | None) -> None:
        self.policy, self.inv, self.now, self.pulls = policy, inv, now, pulls
        self.out = Outcome(counts=[RuleCount(r) for r in policy.rules])
        self.uncovered: dict[str, Problem] = {}

    def verdicts(self, rule: Rule, repo: Repository, images: list[str]) -> dict[str, Verdict]:
        """What ``rule`` says of each tag it selects in ``repo`` (none without ``keep``)."""
        if rule.keep is None:
            return {}
        out: dict[str, Verdict] = {}
        judged = judge(rule, repo, images, self.inv.created, self.now, self.pulls)
        if judged.uncovered is not None and rule.label not in self.uncovered:
            self.uncovered[rule.label] = uncovered(rule.label, repo.name, judged.uncovered)
        for j in judged.ranked:
            if j.pull is not None and j.pull.seen is not None:
                self.out.pulled[(repo.name, j.tag)] = j.pull.seen
            if j.when is None:
                out[j.tag] = Verdict(rule, True, f"{j.said}: cannot tell its age")
                self.out.problems.append(
                    Problem(
                        path=tag_dir(repo.name, j.tag),
                        code=ProblemCode.UNREADABLE,
                        message=f"{rule.label}: {j.said}; kept",
                    )
                )
            else:
                if j.held is not None and j.held[0] in pulled.BY_PULLS:
                    self.out.counts[self.policy.rules.index(rule)].by_pulls += 1
                lasting = j.held is not None and j.held[0] not in CHANGING
                out[j.tag] = Verdict(
                    rule, j.held is not None, _words(rule.keep, j), lasting, j.rank
                )
        return out

    def repository(self, repo: Repository) -> None:
        here = [(i, r) for i, r in enumerate(self.policy.rules) if selects_repository(r, repo.name)]
        if not here:
            return  # no rule selects it: untouched
        self.out.selected[repo.name] = here[0][1].label
        images = sorted(t for t in repo.tags if subject_of(self.inv, repo, t) is None)
        said: dict[str, list[Verdict]] = {}
        for i, rule in here:
            count = self.out.counts[i]
            count.repositories += 1
            for tag, v in self.verdicts(rule, repo, images).items():
                said.setdefault(tag, []).append(v)
                count.tags += 1
        going = {}
        for tag in images:
            verdicts = said.get(tag)
            if not verdicts:
                self.out.notes[(repo.name, tag)] = "no rule of the policy selects this tag"
                continue
            keepers = sorted((v for v in verdicts if v.keeps), key=lambda v: not v.lasting)
            first = keepers[0] if keepers else verdicts[0]
            self.out.decided[(repo.name, tag)] = (first.rule.label, first.rank)
            if keepers:
                self.out.notes[(repo.name, tag)] = "; also ".join(map(str, keepers))
            else:
                going[tag] = verdicts
        self._spare_newest(repo, images, going)
        for tag, verdicts in going.items():
            self.out.tags[(repo.name, tag)] = str(verdicts[0])
            for v in verdicts:
                self.out.counts[self.policy.rules.index(v.rule)].removes += 1
        self._untagged(repo, [r for _, r in here], set(going))

    def _spare_newest(
        self, repo: Repository, images: list[str], going: dict[str, list[Verdict]]
    ) -> None:
        """A repository's newest tag (by push time) goes only when a rule that removes it
        says ``allow_empty: true``: a policy never empties a repository by accident (and
        a rule that keeps more never makes it go)."""
        if not images:
            return
        newest = min(images, key=lambda t: (-repo.tags[t].pushed_at, t))  # rank 1, ties by name
        verdicts = going.get(newest)
        if verdicts is None or any(v.rule.allow_empty for v in verdicts):
            return
        del going[newest]
        self.out.notes[(repo.name, newest)] = (
            f"{verdicts[0]}, but it is the newest tag of {repo.name}: kept (allow_empty: true "
            "on the rule removes it)"
        )

    def _untagged(self, repo: Repository, here: list[Rule], going: set[str]) -> None:
        """The longest ``untagged`` age of the rules selecting ``repo`` applies: what is
        untagged (or left so by the tags going) and younger stays."""
        aged = [r for r in here if r.untagged]
        if not aged:
            return
        rule = max(aged, key=lambda r: (parse_age(r.untagged or "0s"), -here.index(r)))
        self.out.untagged[repo.name] = rule.label
        cutoff = (self.now - parse_age(rule.untagged or "0s")).timestamp()
        staying = {t.current for name, t in repo.tags.items() if name not in going}
        reached = self._reached(repo, going)  # kept because a tag that stays reaches them
        for digest in sorted(repo.revisions - staying - reached):
            when = self.inv.mtimes.get(f"{revision_dir(repo.name, digest)}/link")
            if when is None:
                why = "untagged: cannot tell its age; kept"
            elif after(when, self.now.timestamp()):  # a clock ahead: no age, as a tag's push
                why = (
                    f"untagged, written {day(when)}, after the plan's time "
                    f"{day(self.now.timestamp())}: cannot tell its age; kept"
                )
                self.out.problems.append(
                    Problem(
                        path=revision_dir(repo.name, digest),
                        code=ProblemCode.UNREADABLE,
                        message=f"{rule.label}: {why}",
                    )
                )
            elif when > cutoff:
                why = f"untagged for less than {rule.untagged} (written {day(when)})"
            else:
                continue
            self.out.young[(repo.name, digest)] = f"{rule.label}: {why}"

    def _reached(self, repo: Repository, going: set[str]) -> set[Digest]:
        """What the image tags that stay reach (index children, referrers): the planner
        keeps it, naming the tag; its own age is not why it stays."""
        referrers: dict[Digest, list[Digest]] = {}
        for d in repo.revisions:
            m = self.inv.manifests.get(d)
            if m is not None and m.subject is not None:
                referrers.setdefault(m.subject, []).append(d)
        todo = [
            t.current
            for name, t in repo.tags.items()
            if name not in going
            and t.current is not None
            and subject_of(self.inv, repo, name) is None
        ]
        seen: set[Digest] = set()
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            m = self.inv.manifests.get(d)
            todo += [*(m.children if m is not None else ()), *referrers.get(d, ())]
        return seen


def apply(policy: Policy, inv: Inventory, now: datetime, pulls: Looks | None = None) -> Outcome:
    """What ``policy`` removes and keeps of ``inv``'s tags, and why (``pulls``: the
    pull records, for rules that keep by pulls)."""
    run = _Apply(policy, inv, now, pulls)
    for name in sorted(inv.repositories):
        run.repository(inv.repositories[name])
    run.out.problems += run.uncovered.values()
    return run.out


def uncovered(label: str, repo: str, why: str) -> Problem:
    """The problem a rule that cannot judge by pulls reports, once (at its first
    repository)."""
    return Problem(
        path=repo_dir(repo),
        code=ProblemCode.PULLS_UNCOVERED,
        message=f"{label}: {why}: every tag it judges by pulls is kept",
    )


def unselected(policy: Policy, names: list[str]) -> Iterator[Rule]:
    """The rules that select no repository of ``names``."""
    for rule in policy.rules:
        if not any(selects_repository(rule, n) for n in names):
            yield rule
