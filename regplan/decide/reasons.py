"""What a reason says of what reaches what (pure): the kept tag that keeps a manifest,
and the order in which removed manifests are followed, so that every child of a removed
index says it goes with that index."""

from __future__ import annotations

from collections.abc import Mapping

from regplan.decide.reach import Reach
from regplan.scan.inventory import Inventory, Repository
from regplan.scan.layout import Digest


def closure(
    reach: Reach, inv: Inventory, repo: Repository, roots: Mapping[Digest, str]
) -> dict[Digest, tuple[str, Digest | None]]:
    """``Reach.closure`` of ``roots``, followed first from the roots no other root reaches:
    a child of a removed index says so (and names the image that took the index) whatever
    the order of the digests; the digests are the same either way."""
    referrers = reach.referrers(repo)
    inner: set[Digest] = set()
    for d in roots:
        m = inv.manifests.get(d)
        inner.update(c for c in (*(m.children if m else ()), *referrers.get(d, ())) if c != d)
    out = reach.closure(repo, {d: why for d, why in roots.items() if d not in inner})
    rest = {d: why for d, why in roots.items() if d not in out}  # roots in a loop
    for d, via in reach.closure(repo, rest).items():
        out.setdefault(d, via)
    return out


def reached_by(
    inv: Inventory, repo: Repository, d: Digest, reach: Mapping[Digest, tuple[str, ...]]
) -> str:
    """Which kept tag keeps ``d`` (``reach``: digest -> the kept tags reaching it):
    ``the kept tag team/app:v1 reaches it (index child)``, ``the kept tag r:b points to
    it``."""
    names = reach[d]
    pointing = [n for n in names if repo.tags[n.rpartition(":")[2]].current == d]
    first = (pointing or names)[0]
    more = len(names) - 1
    if pointing:
        also = f" ({more} more kept tags reach it)" if more else ""
        return f"the kept tag {first} points to it{also}"
    m = inv.manifests.get(d)
    how = "referrer" if m is not None and m.subject is not None else "index child"
    also = f"; {more} more kept tags do too" if more else ""
    return f"the kept tag {first} reaches it ({how}{also})"
