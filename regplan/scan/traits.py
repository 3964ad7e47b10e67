"""What a registry's version and configuration make of the same tree.

distribution v3 cannot serve schema-1 manifests (distribution#4002, #4358): on v3 such
a tag does not pull, which the plan says. v3 can accept indexes whose children are
absent (``validation.manifests.indexes.platforms: none`` or ``list``, #3536): there an
absent child is expected, not damage. Pure: an inventory in, the same inventory with
its problems read for that registry out.
"""

from __future__ import annotations

import attrs

from regplan.scan.inventory import Inventory, Problem, ProblemCode
from regplan.scan.layout import short_of, tag_dir
from regplan.scan.manifests import ManifestKind


@attrs.frozen(kw_only=True)
class Traits:
    version: int | None = None
    """The registry's major version (2 or 3) when the operator said it; None: unknown."""
    sparse_indexes: bool = False
    """The registry accepts indexes whose children are absent (its configuration)."""


def read_for(inv: Inventory, traits: Traits) -> Inventory:
    problems = [_expected(p) if traits.sparse_indexes else p for p in inv.problems]
    if traits.version is not None and traits.version >= 3:
        problems += _schema1_tags(inv)
    return attrs.evolve(inv, problems=tuple(sorted(set(problems))))


def _expected(p: Problem) -> Problem:
    if p.code is not ProblemCode.MISSING_CHILD:
        return p
    return Problem(
        path=p.path,
        code=ProblemCode.ABSENT_CHILD,
        message=f"{p.message}: expected, the registry accepts indexes whose children are "
        "absent (validation.manifests.indexes.platforms)",
    )


def _schema1_tags(inv: Inventory) -> list[Problem]:
    out = []
    for name, repo in inv.repositories.items():
        for tag in repo.tags.values():
            if tag.current is None:
                continue
            m = inv.manifests.get(tag.current)
            if m is not None and m.kind is ManifestKind.SCHEMA1:
                out.append(
                    Problem(
                        path=f"{tag_dir(name, tag.name)}/current/link",
                        code=ProblemCode.SCHEMA1_ON_V3,
                        message=f"{name}:{tag.name} is a schema-1 manifest "
                        f"({short_of(tag.current)}): distribution v3 cannot serve it, the tag "
                        "does not pull (convert it, or remove it)",
                    )
                )
    return out
