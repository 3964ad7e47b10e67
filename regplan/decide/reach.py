"""What reaches what inside one repository: index children, referrers, and the tags
that still reach a manifest. Pure, with one cache per repository."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping

from regplan.scan.inventory import Inventory, Repository
from regplan.scan.layout import Digest


def image_name(repo: str, digest: Digest) -> str:
    return f"{repo}@{digest}"


class Reach:
    def __init__(
        self, inv: Inventory, whole: Collection[str], removed_tags: Mapping[str, set[str]]
    ) -> None:
        self.inv = inv
        self.whole = whole
        """Repositories removed whole: no tag of theirs stays."""
        self.removed_tags = removed_tags
        """repository -> its removed tags (the planner's: it grows as attached tags follow)."""
        self._tag_reach: dict[str, Mapping[Digest, tuple[str, ...]]] = {}
        self._referrers: dict[str, Mapping[Digest, set[Digest]]] = {}

    def referrers(self, repo: Repository) -> Mapping[Digest, set[Digest]]:
        """subject -> the revisions of ``repo`` that refer to it (built once per repository)."""
        cached = self._referrers.get(repo.name)
        if cached is not None:
            return cached
        out: dict[Digest, set[Digest]] = defaultdict(set)
        for d in repo.revisions:
            m = self.inv.manifests.get(d)
            if m is not None and m.subject is not None:
                out[m.subject].add(d)
        self._referrers[repo.name] = out
        return out

    def closure(
        self, repo: Repository, roots: Mapping[Digest, str]
    ) -> dict[Digest, tuple[str, Digest | None]]:
        """Every digest reached from ``roots`` by index children and referrers.

        Maps each to (why, the digest it was reached from; None for a root).
        """
        referrers = self.referrers(repo)
        via: dict[Digest, tuple[str, Digest | None]] = {}
        stack: list[tuple[Digest, str, Digest | None]] = [
            (d, why, None) for d, why in sorted(roots.items(), reverse=True)
        ]
        while stack:
            d, why, parent = stack.pop()
            if d in via:
                continue
            via[d] = (why, parent)
            m = self.inv.manifests.get(d)
            name = image_name(repo.name, d)
            if m is not None:
                stack.extend((c, f"child of removed index {name}", d) for c in reversed(m.children))
            stack.extend(
                (r, f"referrer of removed {name}", d)
                for r in sorted(referrers.get(d, ()), reverse=True)
            )
        return via

    def tag_reach(self, repo: Repository) -> Mapping[Digest, tuple[str, ...]]:
        """digest -> names of the tags that still reach it (kept tags only; sorted tuples:
        kept for the whole sweep, and a frozenset of one is 216 bytes)."""
        cached = self._tag_reach.get(repo.name)
        if cached is not None:
            return cached
        removed = self.removed_tags.get(repo.name, set())
        reach: dict[Digest, set[str]] = defaultdict(set)
        if repo.name not in self.whole:
            for tag in repo.tags.values():
                if tag.name in removed or tag.current is None:
                    continue
                label = f"{repo.name}:{tag.name}"  # one string for all it reaches
                for d in self.closure(repo, {tag.current: ""}):
                    reach[d].add(label)
        result = {d: tuple(sorted(n)) for d, n in reach.items()}
        self._tag_reach[repo.name] = result
        return result

    def forget(self, repo: str) -> None:
        """The removed tags of ``repo`` changed: its tag reach is computed again."""
        self._tag_reach.pop(repo, None)

    def names(self, repo: Repository, digest: Digest) -> tuple[str, ...]:
        return self.tag_reach(repo).get(digest) or (image_name(repo.name, digest),)
