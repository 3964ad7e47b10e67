"""What an approved plan may still move on a registry pushed to since planning.

Under the lock, with the registry unable to write, the storage is read again and the
plan's own signed request (its flags or policy text, its ``--protect`` lines, its
ages measured at the plan's time) is decided again on the tree as it is now. A
target moves only if all of these hold:

1. the plan lists it (the approval is an upper bound);
2. it is as it was when planned (its digest: every path under it with its content,
   and its tags' push times), so a tag pushed again is never removed;
3. the decision made again still removes it;
4. nothing that stays needs it (decide/needs.py): what the plan kept, what was pushed
   since, and what a new decision would remove but nobody approved.

Everything else is skipped, each with why. An empty folder the plan prunes goes only
if all it holds goes. The tree to expect afterwards is the one read now, less what
moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from datetime import UTC, datetime

import attrs

from regplan.decide import needs
from regplan.decide.flags import Retention
from regplan.decide.planner import decide_spooled
from regplan.decide.protect import Protect
from regplan.decide.selection import ImageSpec, Selection, resolve
from regplan.errors import ApplyError, PolicyError, SelectionError, StalePlanError
from regplan.plans.plan import Plan, Request, Target, TargetKind
from regplan.plans.planfile import PlanStream
from regplan.policy import load
from regplan.progress import Progress
from regplan.pulls import records
from regplan.scan import fingerprint, identity, tokens
from regplan.scan.inventory import Inventory
from regplan.scan.layout import part_of
from regplan.storage import location
from regplan.storage.location import Location

GONE = "gone since the plan"
CHANGED = "changed since the plan (pushed again?)"
UNSELECTED = "no longer selected by the plan's request"
NOT_EMPTY = "no longer empty: something in it stays"


@attrs.frozen
class Recheck:
    """What an apply moves of its plan, decided on the tree as it is now."""

    skipped: tuple[tuple[int, str, str], ...]
    """(index in the plan, path, why) of every target that stays."""
    after: fingerprint.TreeDigest
    """The tree to expect once the rest has moved."""
    bytes: int = 0
    """Of the targets skipped."""
    before: fingerprint.TreeDigest | None = None
    """The tree as the apply found it (what a rollback restores)."""

    @property
    def skip(self) -> frozenset[int]:
        return frozenset(i for i, _, _ in self.skipped)


def selection_of(request: Request) -> Selection:
    """The selection a plan's request records, as ``plan`` made it (the policy from its
    recorded text); ApplyError when it cannot be made again."""
    r = request.selection
    try:
        policy = None
        if request.policy is not None:
            policy = load.read(request.policy.text.encode(), request.policy.file)
        return Selection(
            images=tuple(ImageSpec.parse(i) for i in r.images),
            untagged=r.untagged,
            prune=r.prune,
            retention=Retention(**{f.name: getattr(r, f.name) for f in attrs.fields(Retention)}),
            gc=r.gc,
            gc_min_age=r.gc_min_age,
            uploads_older_than=r.uploads_older_than,
            leftovers_older_than=r.leftovers_older_than,
            protect=tuple(Protect.parse(p.ref, p.source) for p in r.protect),
            policy=policy,
            pulls=None if request.pulls is None else records.pulls_of(request.pulls),
        )
    except (SelectionError, PolicyError, TypeError, ValueError) as e:
        raise ApplyError(
            f"the plan's request cannot be decided again ({e}); nothing was moved "
            "(apply it as planned with --exact)"
        ) from None


def _chosen(selection: Selection, inv: Inventory, plan: Plan, storage: Location) -> frozenset[str]:
    """What the plan's request, decided again on ``inv`` at the plan's time, removes."""
    planned_at = datetime.strptime(plan.created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    resolved = resolve(selection, inv, planned_at, strict=False)
    prune = selection.prune and location.has_folders(storage)  # as the plan was made
    spooled = decide_spooled(inv, resolved, prune=prune)
    try:
        return frozenset(t.path for t in spooled.targets.targets())
    finally:
        spooled.targets.close()


def _verdict(inv: Inventory, t: Target, chosen: frozenset[str] | None) -> str | None:
    """Why a target stays (None: it may move, if nothing needs it)."""
    if t.path not in inv.tree:
        return GONE
    if identity.of_target(inv, t.path) != t.digest:
        return CHANGED
    return None if chosen is None or t.path in chosen else UNSELECTED


def _empties(inv: Inventory, folders: Mapping[int, Target], moving: set[str]) -> dict[int, str]:
    """The empty folders the plan prunes that would still hold something."""

    def goes(path: str) -> bool:
        parts = path.split("/")
        return any("/".join(parts[:i]) in moving for i in range(1, len(parts) + 1))

    out = {}
    for i, t in folders.items():
        lines = inv.tree.lines_under(t.path)
        held = (line.split("\0", 1) for line in lines)
        if any(not tokens.is_directory(token) and not goes(path) for path, token in held):
            out[i] = NOT_EMPTY
    return out


def recheck(
    stream: PlanStream,
    storage: Location,
    progress: Progress | None = None,
    *,
    resuming: Recheck | None = None,
    started: Set[int] = frozenset(),
) -> Recheck:
    """Read the storage, decide the plan's request again, and say what may move (for an
    apply killed part way, ``resuming`` is what it decided: what it skipped stays
    skipped, what it began to move (``started``: something in its slot) is finished,
    and what else the tree as it is now holds back is added)."""
    plan: Plan = stream.header
    selection = selection_of(plan.request)
    inv = location.read(
        storage, progress=progress, created=selection.created, mtimes=selection.ages
    )
    done = inv.tree.digest.digest == plan.fingerprint.after and plan.summary.targets
    if done and resuming is None:
        raise StalePlanError(
            f"plan {plan.plan_id} was already applied to {storage.root} "
            "(the tree is in the state the plan leaves)"
        )
    # run again after a kill, the decision it made stands: what it moved already took
    # with it the reasons for the rest (a revision's blobs); only changes and needs count
    chosen = _chosen(selection, inv, plan, storage) if resuming is None else None
    why: dict[int, str] = {i: w for i, _, w in resuming.skipped} if resuming else {}
    paths: dict[int, str] = {}
    sizes: dict[int, int] = {}
    folders: dict[int, Target] = {}
    for i, t in enumerate(stream.targets()):
        paths[i], sizes[i] = t.path, t.bytes
        if i in why or i in started:
            continue
        if t.kind == TargetKind.EMPTY_DIR:
            if t.path in inv.tree:
                folders[i] = t
            else:
                why[i] = GONE
            continue
        if (said := _verdict(inv, t, chosen)) is not None:
            why[i] = said
    moving = {p for i, p in paths.items() if i not in why and i not in folders}
    held = needs.needed(inv, moving)
    for i, p in paths.items():
        if p in held and i not in started:  # one begun is finished: half moved is broken
            why[i] = f"needed by {held[p]}"
    moving -= {paths[i] for i in why}  # what is needed stays (but what a killed run began)
    why.update(_empties(inv, folders, moving))
    going = moving | {t.path for i, t in folders.items() if i not in why}
    after = location.predicted(storage, inv.tree, sorted(going, key=part_of))
    skipped = tuple((i, paths[i], why[i]) for i in sorted(why))
    return Recheck(skipped, after, sum(sizes[i] for i in why), inv.tree.digest)


def describe(whys: Iterable[str]) -> str:
    """One line: how many targets stay, by reason."""
    counts: dict[str, int] = {}
    for why in whys:
        key = "needed by an image that stays" if why.startswith("needed by ") else why
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{n} {why}" for why, n in sorted(counts.items()))


def resumed(before: Recheck, found: Recheck) -> Recheck:
    """``found`` (decided again with what ``before`` skipped kept) for an apply run again
    after a kill: what is gone now was moved or pruned by the run killed (or went since:
    the moves say so), so only what else the tree holds back is added to the skips."""
    old = {i for i, _, _ in before.skipped}
    kept = tuple(s for s in found.skipped if s[0] in old or s[2] != GONE)
    return attrs.evolve(found, skipped=kept, before=before.before, bytes=before.bytes)
