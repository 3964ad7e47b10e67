"""What a plan reads of a pull store (pure): each manifest's and tag's last pull and
count, the spans the records cover, and an image's last pull as retention judges it.

An image's pulls are those of its manifest, of the index that lists it and of the
children it lists (a client pulls the index by tag, then one platform by digest), and
its tag's pulls where the source did not say which manifest the tag gave (access logs).
A signature's or other referrer's pull is its own: it keeps nothing else.

Coverage: the spans of every source, joined where they are at most ``GAP`` apart (a
receiver restarted, the next log file), cover a window when one of them reaches from
its start to the plan's time (within ``GAP``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

import attrs

from regplan.scan.inventory import Inventory, Repository
from regplan.scan.layout import Digest

GAP = timedelta(hours=1).total_seconds()
"""The longest silence in the records that still counts as covered: the registry
retries a notification until the receiver answers, and a log's lines are requests,
so a quiet hour is no hole. Longer, and what was pulled then is unknown."""
DEPTH = 4
"""Index levels followed from an image (an index of indexes is rare; a loop is hostile)."""


@attrs.frozen
class Seen:
    """The last pull (epoch seconds) and how many."""

    last: float
    count: int

    def __add__(self, other: Seen) -> Seen:
        return Seen(max(self.last, other.last), self.count + other.count)


@attrs.frozen
class Span:
    """A time the records of ``source`` cover, from ``since`` to ``until``."""

    source: str
    since: float
    until: float


@attrs.frozen(kw_only=True)
class Pulls:
    """A pull store as read (or as a plan recorded what its rules used)."""

    file: str
    sha256: str
    """Of the records read (rows in order), not of the file: a receiver writing on does
    not change what this plan read."""
    spans: tuple[Span, ...] = ()
    digests: Mapping[tuple[str, str], Seen] = attrs.field(factory=dict)
    """(repository, manifest digest) -> its pulls, by tag or by digest."""
    tags: Mapping[tuple[str, str], Seen] = attrs.field(factory=dict)
    """(repository, tag) -> its pulls whose manifest the source did not name."""

    def known_since(self, now: float) -> float | None:
        """Since when the records cover up to ``now`` without a gap: the start of the
        joined spans that reach ``now`` (None: none does)."""
        joined: list[list[float]] = []
        for s in sorted(self.spans, key=lambda s: s.since):
            if joined and s.since <= joined[-1][1] + GAP:
                joined[-1][1] = max(joined[-1][1], s.until)
            else:
                joined.append([s.since, s.until])
        if joined and joined[-1][1] + GAP >= now:
            return joined[-1][0]
        return None

    @property
    def began(self) -> float | None:
        """The first time any record covers."""
        return min((s.since for s in self.spans), default=None)


class Looks:
    """An inventory's images' pulls, each index's parents found once per repository."""

    def __init__(self, pulls: Pulls, inv: Inventory) -> None:
        self.pulls = pulls
        self.inv = inv
        self._parents: dict[str, dict[Digest, list[Digest]]] = {}

    def _parents_in(self, repo: Repository) -> dict[Digest, list[Digest]]:
        found = self._parents.get(repo.name)
        if found is None:
            found = {}
            for d in repo.revisions:
                m = self.inv.manifests.get(d)
                for child in m.children if m is not None else ():
                    found.setdefault(child, []).append(d)
            self._parents[repo.name] = found
        return found

    def family(self, repo: Repository, digest: Digest) -> set[Digest]:
        """``digest``, the indexes that list it and what it lists, to ``DEPTH`` levels."""
        out = {digest, *self._parents_in(repo).get(digest, ())}
        todo = [(digest, 0)]
        while todo:
            d, depth = todo.pop()
            m = self.inv.manifests.get(d)
            if m is None or depth >= DEPTH:
                continue
            for child in m.children:
                if child not in out:
                    out.add(child)
                    todo.append((child, depth + 1))
        return out

    def tag(self, repo: Repository, name: str) -> Seen | None:
        """The pulls of the image tag ``name`` of ``repo``; None: never pulled."""
        tag = repo.tags[name]
        seen = self.pulls.tags.get((repo.name, name))
        family = self.family(repo, tag.current) if tag.current is not None else ()
        for d in sorted(family):
            mine = self.pulls.digests.get((repo.name, str(d)))
            if mine is not None:
                seen = mine if seen is None else seen + mine
        return seen
