"""A cleanup policy applied to an inventory (pure): which tags its rules remove and
keep, each with the rule that decided (regplan.policy says how rules combine).

A tag is removed when at least one rule selects it and no rule that selects it keeps
it. What cannot be dated (``by: created`` without a config time) is kept.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from datetime import datetime

import attrs

from regplan.decide.ages import day, parse_age, tag_time
from regplan.decide.policy import Keep, Policy, Rule
from regplan.scan.inventory import Inventory, Problem, ProblemCode, Repository, subject_of
from regplan.scan.layout import Digest, revision_dir, tag_dir


@attrs.frozen
class Verdict:
    rule: Rule
    keeps: bool
    why: str

    def __str__(self) -> str:
        return f"{self.rule.label}: {self.why}"


@attrs.define
class RuleCount:
    """What one rule selects on a registry (``policy check --root``)."""

    rule: Rule
    repositories: int = 0
    tags: int = 0
    removes: int = 0


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


def selects_repository(rule: Rule, name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, g) for g in rule.repositories) and not any(
        fnmatch.fnmatchcase(name, g) for g in rule.exclude
    )


def _selects_tag(rule: Rule, tag: str) -> bool:
    if rule.tags_regex is not None:
        return re.fullmatch(rule.tags_regex, tag) is not None
    return any(fnmatch.fnmatchcase(tag, g) for g in rule.tags)


class _Apply:
    def __init__(self, policy: Policy, inv: Inventory, now: datetime) -> None:
        self.policy, self.inv, self.now = policy, inv, now
        self.out = Outcome(counts=[RuleCount(r) for r in policy.rules])

    def verdicts(self, rule: Rule, repo: Repository, images: list[str]) -> dict[str, Verdict]:
        """What ``rule`` says of each tag it selects in ``repo`` (none without ``keep``)."""
        k = rule.keep
        if k is None:
            return {}
        chosen = [t for t in images if _selects_tag(rule, t)]
        timed = {t: tag_time(repo.tags[t], self.inv.created, k.by) for t in chosen}
        ranked = sorted(chosen, key=lambda t: (-(timed[t][0] or float("-inf")), t))
        cutoff = (self.now - parse_age(k.within)).timestamp() if k.within else None
        out: dict[str, Verdict] = {}
        for rank, tag in enumerate(ranked, 1):
            when, said = timed[tag]
            if when is None:
                out[tag] = Verdict(rule, True, f"{said}: cannot tell its age")
                self.out.problems.append(
                    Problem(
                        path=tag_dir(repo.name, tag),
                        code=ProblemCode.UNREADABLE,
                        message=f"{rule.label}: {said}; kept",
                    )
                )
            else:
                keeps, why = _judge(k, tag, rank, (when, said), cutoff)
                out[tag] = Verdict(rule, keeps, why)
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
            keeper = next((v for v in verdicts if v.keeps), None)
            if keeper is not None:
                self.out.notes[(repo.name, tag)] = str(keeper)
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
        newest = max(images, key=lambda t: (repo.tags[t].pushed_at, t))
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
        for digest in sorted(repo.revisions - staying):
            when = self.inv.mtimes.get(f"{revision_dir(repo.name, digest)}/link")
            if when is None:
                why = "untagged: cannot tell its age; kept"
            elif when > cutoff:
                why = f"untagged for less than {rule.untagged} (written {day(when)})"
            else:
                continue
            self.out.young[(repo.name, digest)] = f"{rule.label}: {why}"


def apply(policy: Policy, inv: Inventory, now: datetime) -> Outcome:
    """What ``policy`` removes and keeps of ``inv``'s tags, and why."""
    run = _Apply(policy, inv, now)
    for name in sorted(inv.repositories):
        run.repository(inv.repositories[name])
    return run.out


def unselected(policy: Policy, names: list[str]) -> Iterator[Rule]:
    """The rules that select no repository of ``names``."""
    for rule in policy.rules:
        if not any(selects_repository(rule, n) for n in names):
            yield rule


def _judge(
    k: Keep, tag: str, rank: int, timed: tuple[float, str], cutoff: float | None
) -> tuple[bool, str]:
    """Whether ``k`` keeps the tag of ``rank`` (by ``k.by``) and why, or why not."""
    when, said = timed
    by = "push time" if k.by == "pushed" else "created time"
    if k.all:
        return True, "keeps every tag it selects"
    if k.newest is not None and rank <= k.newest:
        return True, f"rank {rank} of keep newest {k.newest} by {by}"
    if cutoff is not None and when >= cutoff:
        return True, f"within {k.within}: {said}"
    glob = next((g for g in k.tags if fnmatch.fnmatchcase(tag, g)), None)
    if glob is not None:
        return True, f"matches keep tags {glob}"
    if k.regex is not None and re.fullmatch(k.regex, tag):
        return True, f"matches keep regex {k.regex}"
    why = []
    if k.newest is not None:
        why.append(f"rank {rank} > keep newest {k.newest} by {by}")
    if cutoff is not None:
        why.append(f"not within {k.within}: {said}")
    return False, " and ".join(why) or "selected, and no keep criterion holds"
