"""What the planner decides: the targets (spooled or held), what it touched but keeps,
and the problems; and how a reason names the images it speaks for."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from regplan.plans.plan import Kept, PlanProblem, Target
from regplan.plans.spool import TargetSpool

MAX_REFS = 20


@attrs.frozen(kw_only=True)
class Decision:
    targets: tuple[Target, ...]
    kept: tuple[Kept, ...]
    problems: tuple[PlanProblem, ...]

    @property
    def removed_paths(self) -> tuple[str, ...]:
        return tuple(t.path for t in self.targets)


@attrs.frozen(kw_only=True)
class Spooled:
    """A decision whose targets wait in a spool, in plan order: what ``regplan plan``
    writes, so that its memory does not grow with the targets. Close the spool."""

    targets: TargetSpool
    kept: tuple[Kept, ...]
    problems: tuple[PlanProblem, ...]


def refs(names: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated, and capped so a base layer shared by thousands stays readable."""
    ordered = sorted(set(names))
    if len(ordered) <= MAX_REFS:
        return tuple(ordered)
    return (*ordered[:MAX_REFS], f"… and {len(ordered) - MAX_REFS} more")
