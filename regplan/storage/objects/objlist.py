"""The keys at many targets' places, in few requests.

A place is every key under a target folder's prefix, or a file target's one key. On a
bucket that :attr:`~regplan.storage.objects.bucket.Bucket.seeks` (S3's StartAfter, GCS's
startOffset), the places of a batch are listed in key order: each request is one page
of keys from the first place not yet listed whole, so places that lie close together
share a page (a batch of blobs and links: about one request per 1,000 keys) and places
far apart cost one request each; no key is listed twice. When the first
pages find the places far apart, the rest are listed the same way in up to ``JOBS``
runs at once, so a sparse batch waits no longer than one listing per place in
parallel. A bucket that does not seek (Azure) lists each place on its own, ``JOBS`` at
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from regplan.storage.objects.bucket import Bucket, Obj

JOBS = 16
"""Listings in flight at once (each waits on the server, not the CPU)."""
PROBE = 2
"""Pages listed in one run before deciding whether the rest is listed in runs at once."""
RUN = 8
"""Pages one run is expected to take before the rest is split into runs at once."""


@attrs.frozen
class Place:
    """Where a target's keys lie: every key under its folder's prefix, or, for a file
    target (a leftover), the one key of that name in its folder's prefix."""

    target: str
    folder: str
    """The folder the keys' ``rel`` are relative to (a file target's parent)."""
    prefix: str
    """``folder``'s key prefix, ending in ``/``."""
    only: str | None = None

    @property
    def first(self) -> str:
        """The least key the place can hold."""
        return self.prefix if self.only is None else self.prefix + self.only

    def holds(self, key: str) -> bool:
        return key.startswith(self.prefix) if self.only is None else key == self.first

    def before(self, key: str) -> bool:
        """Every key the place can hold sorts before ``key``."""
        return key > self.first and not self.holds(key)

    def rel(self, key: str) -> str:
        return key[len(self.prefix) :]

    def objects(self, bucket: Bucket) -> list[Obj]:
        """The place's own listing."""
        if self.only is None:
            return list(bucket.objects(self.prefix))
        return [
            attrs.evolve(o, rel=self.only)
            for o in bucket.objects(self.first)
            if o.rel == ""  # not a longer name that shares the prefix
        ]


@attrs.define
class _Run:
    """Places (in key order) listed page after page; ``at`` is the first not listed
    whole, ``after`` the last key listed (the next page begins past both)."""

    places: list[Place]
    found: list[list[Obj]]
    at: int = 0
    after: str | None = None
    pages: int = 0

    def done(self) -> bool:
        return self.at >= len(self.places)

    def step(self, bucket: Bucket, root: str) -> bool:
        """One page; False when the bucket turned out not to seek."""
        least = self.places[self.at].first[:-1]  # every key it can hold sorts after this
        got = bucket.page(root, least if self.after is None else max(self.after, least))
        if got is None:
            return False
        objs, more = got
        self.pages += 1
        for o in objs:
            key = root + o.rel
            while not self.done() and self.places[self.at].before(key):
                self.at += 1
            if self.done():
                break
            here = self.places[self.at]
            if here.holds(key):
                self.found[self.at].append(attrs.evolve(o, rel=here.rel(key)))
        if not more:
            self.at = len(self.places)  # nothing after the last key: every place is whole
            return True
        if not objs:  # more, yet none: a server that pages oddly (list each place)
            return False
        self.after = root + objs[-1].rel
        while not self.done() and self.places[self.at].before(self.after):
            self.at += 1
        return True

    def finish(self, bucket: Bucket, root: str, limit: int | None = None) -> bool:
        """Page on (at most ``limit`` pages); False when the bucket turned out not to seek."""
        while not self.done() and (limit is None or self.pages < limit):
            if not self.step(bucket, root):
                return False
        return True


def listed(bucket: Bucket, places: Sequence[Place]) -> list[list[Obj]]:
    """Each place's keys, in key order (relative to the place's folder)."""
    if not places:
        return []
    order = sorted(range(len(places)), key=lambda i: places[i].first)
    found = _seek([places[i] for i in order], bucket) if bucket.seeks else None
    if found is None:
        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            return list(pool.map(lambda p: p.objects(bucket), places))
    out: list[list[Obj]] = [[] for _ in places]
    for i, objs in zip(order, found, strict=True):
        out[i] = objs
    return out


def _common(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _seek(places: list[Place], bucket: Bucket) -> list[list[Obj]] | None:
    """Places in key order listed by pages from a key: one run while it goes fast, then
    the rest in runs at once; None when the bucket turned out not to seek."""
    root = _common(places[0].first, places[-1].first)  # in key order: what all share
    found: list[list[Obj]] = [[] for _ in places]
    first = _Run(places, found)
    if not first.finish(bucket, root, PROBE):
        return None
    left = len(places) - first.at
    if left == 0:
        return found
    per_page = max(first.at, 1) / first.pages
    runs = min(JOBS, max(1, round(left / per_page / RUN)))
    if runs == 1:
        return found if first.finish(bucket, root) else None
    # the first run keeps the place it is part way through; the rest start afresh
    size = -(-left // runs)
    tail = [
        _Run(places[s : s + size], found[s : s + size])
        for s in range(first.at + size, len(places), size)
    ]
    first.places, first.found = places[: first.at + size], found[: first.at + size]
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        ok = list(pool.map(lambda r: r.finish(bucket, root), [first, *tail]))
    return found if all(ok) else None
