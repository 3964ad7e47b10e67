"""What the pull records say of the tags one rule judges (pure): each tag's pulls, its
rank by last pull, and whether the records cover the rule's window; and how a reason
says it (``last pulled 2026-09-02 10:00 (23 pulls)``, ``not pulled since records
began 2026-08-01 00:00``).

Fail closed: when the records do not reach back to ``plan time - pulled_within`` (or
up to the plan's time, within ``facts.GAP``), each criterion by pulls holds for every
tag the rule selects, with why, and the plan reports it (``Judgement.uncovered``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import attrs

from regplan.decide.ages import parse_age
from regplan.decide.policy import Keep, Origin, Rule
from regplan.errors import SelectionError
from regplan.pulls.facts import Looks, Seen
from regplan.pulls.pull import show_time
from regplan.scan.inventory import Repository

BY_PULLS = ("pulled_within", "most_recently_pulled")
"""The keep criteria that read pulls."""


@attrs.frozen
class Pulled:
    """A tag's pulls as one rule judges them."""

    seen: Seen | None
    """None: no pull in the records."""
    rank: int | None
    """Among the rule's tags that were pulled, most recent first (ties by tag name)."""
    cutoff: float | None
    """``pulled_within``'s: pulls since then keep."""
    uncovered: str | None
    """Why the records cannot judge the rule (every tag is then kept)."""
    began: float | None
    """When the records began."""

    @property
    def said(self) -> str:
        if self.seen is not None:
            n = self.seen.count
            return f"last pulled {show_time(self.seen.last)} ({n} pull{'' if n == 1 else 's'})"
        if self.began is None:
            return "no pull records"
        return f"not pulled since records began {show_time(self.began)}"


@attrs.frozen
class RulePulls:
    tags: Mapping[str, Pulled] = attrs.field(factory=dict)
    uncovered: str | None = None


def of(
    rule: Rule, k: Keep, repo: Repository, ranked: Sequence[str], pulls: Looks | None, now: datetime
) -> RulePulls:
    """The pulls of ``ranked`` (the tags ``rule`` selects in ``repo``)."""
    if not k.by_pulls:
        return RulePulls()
    if pulls is None:
        what = "--pulled-within" if rule.origin is Origin.FLAGS else rule.label
        raise SelectionError(f"{what} keeps by pulls: give --pulls FILE (regplan pulls)")
    seen = {t: pulls.tag(repo, t) for t in ranked}
    order = sorted((t for t in ranked if seen[t] is not None), key=lambda t: (-_last(seen[t]), t))
    rank = {t: i for i, t in enumerate(order, 1)}
    at = now.timestamp()
    cutoff = at - parse_age(k.pulled_within).total_seconds() if k.pulled_within else None
    uncovered = coverage(pulls, cutoff, at)
    began = pulls.pulls.began
    return RulePulls(
        {t: Pulled(seen[t], rank.get(t), cutoff, uncovered, began) for t in ranked}, uncovered
    )


def _last(s: Seen | None) -> float:
    return s.last if s is not None else float("-inf")


def coverage(pulls: Looks, cutoff: float | None, now: float) -> str | None:
    """Why the records do not cover from ``cutoff`` (None: from their start) to ``now``."""
    since = pulls.pulls.known_since(now)
    if since is None:
        ends = max((s.until for s in pulls.pulls.spans), default=None)
        if ends is None:
            return "the pull store holds no records"
        return f"pull records end {show_time(ends)}, before the plan's time"
    if cutoff is not None and since > cutoff:
        return (
            f"pulls known only since {show_time(since)}, after the window's start "
            f"{show_time(cutoff)}"
        )
    return None


def within(p: Pulled | None) -> str | None:
    """``keep.pulled_within`` holds: ``""``, or why the records cannot judge it."""
    if p is None:
        return None
    if p.uncovered is not None:
        return p.uncovered
    ok = p.seen is not None and p.cutoff is not None and p.seen.last >= p.cutoff
    return "" if ok else None


def most_recent(p: Pulled | None, n: int) -> str | None:
    """``keep.most_recently_pulled: n`` holds: ``""``, or why the records cannot judge it."""
    if p is None:
        return None
    if p.uncovered is not None:
        return p.uncovered
    return "" if p.rank is not None and p.rank <= n else None


def held(k: Keep, name: str, what: str, p: Pulled | None) -> str:
    """A reason that a criterion by pulls (or one without words of its own) keeps a tag."""
    if name == "pulled_within" and p is not None:
        if what:
            return f"pulled within {k.pulled_within} cannot be judged: {what}: kept"
        return f"pulled within {k.pulled_within}: {p.said}"
    if name == "most_recently_pulled" and p is not None:
        n = k.most_recently_pulled
        if what:
            return f"most recently pulled {n} cannot be judged: {what}: kept"
        return f"rank {p.rank} of keep most recently pulled {n}: {p.said}"
    return f"matches keep {name} {what}"


def not_held(k: Keep, p: Pulled | None) -> list[str]:
    """Why the criteria by pulls do not keep a tag."""
    if p is None:
        return []
    out = []
    if k.pulled_within is not None:
        out.append(f"not pulled within {k.pulled_within}: {p.said}")
    if k.most_recently_pulled is not None:
        out.append(f"not among the {k.most_recently_pulled} most recently pulled: {p.said}")
    return out
