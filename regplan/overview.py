"""What a plan does in image terms, gathered in one pass over its targets. Pure.

Every review view (``show`` text, Markdown, HTML) is drawn from an
:class:`Overview`. It holds what grows with the registry's repositories and
removed tags, never the targets themselves, and only the first few kept
entries and problems (the views cap them; their counts come from the plan).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence

import attrs

from regplan.layout import attached_kind, attached_subject, split_repo
from regplan.plan import Kept, Plan, PlanProblem, Target, TargetKind
from regplan.planfile import Source, source

FIRST = 200
"""Kept entries and problems an overview holds at the most (the longest view's cap)."""
NAMED_TAGS = 5
"""Tags named in a repository's line; the rest are counted."""


def _repo_of_ref(ref: str) -> str:
    for sep in ("@", ":", " "):
        if sep in ref:
            return ref.split(sep, 1)[0]
    return ref


def target_repo(target: Target) -> str:
    """The repository a target's bytes are counted under (blobs: their first reference)."""
    split = split_repo(target.path)
    if split is not None:
        return split[0]
    if target.path.startswith("repositories/"):
        return target.path.removeprefix("repositories/")
    if target.refs:
        return _repo_of_ref(target.refs[0])
    return "(registry-wide)"


@attrs.frozen(kw_only=True)
class Overview:
    header: Plan
    """The plan without its lists."""
    by_repository: Sequence[tuple[str, int, int]]
    """(repository, targets, bytes), largest first, then by name."""
    what: dict[str, str]
    """repository -> what the plan does to it, in image terms."""
    images: Sequence[tuple[str, list[str]]]
    """(image, what is attached to it) for every removed tag, sorted."""
    kept_count: int
    kept: Sequence[Kept]
    """The first FIRST kept entries, in the plan's order."""
    problems_count: int
    problems: Sequence[PlanProblem]
    """The first FIRST problems, in the plan's order."""


@attrs.define
class _Tally:
    count: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))
    size: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))
    whole: dict[str, list[str]] = attrs.field(factory=dict)
    """Repositories removed whole -> their image tags (as the target's refs name them)."""
    tags: dict[str, list[str]] = attrs.field(factory=lambda: defaultdict(list))
    untagged: dict[str, int] = attrs.field(factory=lambda: defaultdict(int))
    other: dict[str, dict[str, int]] = attrs.field(
        factory=lambda: defaultdict(lambda: defaultdict(int))
    )
    attached: list[tuple[str, str]] = attrs.field(factory=list)
    """(subject image, kind) of every removed signature, attestation, SBOM, referrers tag."""

    def add(self, t: Target) -> None:
        repo = target_repo(t)
        self.count[repo] += 1
        self.size[repo] += t.bytes
        split = split_repo(t.path)
        if t.kind is TargetKind.REPOSITORY:  # the folder, or its _manifests, _layers...
            tags = [r.rpartition(":")[2] for r in t.refs]
            self.whole.setdefault(repo, [tag for tag in tags if attached_subject(tag) is None])
        elif t.kind is TargetKind.TAG and split is not None:
            tag = t.path.rsplit("/", 1)[1]
            if attached_subject(tag) is None:
                self.tags[split[0]].append(tag)
            elif t.refs:
                self.attached.append((t.refs[0], attached_kind(tag)))
            else:  # a subject the plan does not name: listed as it is
                self.attached.append((f"{split[0]}:{tag}", ""))
        elif (
            t.kind is TargetKind.REVISION
            and split is not None
            and t.refs
            and t.refs[0].startswith(f"{split[0]}@")
        ):
            self.untagged[split[0]] += 1
        if t.kind not in (TargetKind.REPOSITORY, TargetKind.TAG, TargetKind.REVISION):
            self.other[repo][t.kind.value.replace("_", " ")] += 1

    def by_repository(self) -> list[tuple[str, int, int]]:
        rows = ((r, n, self.size[r]) for r, n in self.count.items())
        return sorted(rows, key=lambda x: (-x[2], x[0]))

    def images(self) -> list[tuple[str, list[str]]]:
        images: dict[str, list[str]] = {}
        for repo, tags in self.whole.items():
            shown = ", ".join(tags[:NAMED_TAGS]) + (" …" if len(tags) > NAMED_TAGS else "")
            images[f"{repo} (whole repository)"] = [f"tags {shown}"] if tags else []
        for repo, tags in self.tags.items():
            for tag in tags:
                images.setdefault(f"{repo}:{tag}", [])
        for image, kind in self.attached:
            kinds = images.setdefault(image, [])
            if kind:
                kinds.append(kind)
        return sorted((image, sorted(kinds)) for image, kinds in images.items())

    def what(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for repo in {*self.whole, *self.tags, *self.untagged, *self.other}:
            if repo in self.whole:
                out[repo] = "the whole repository"
                continue
            parts = []
            tags = sorted(self.tags.get(repo, ()))
            if tags:
                shown = ", ".join(tags[:NAMED_TAGS])
                more = f" and {len(tags) - NAMED_TAGS} more" if len(tags) > NAMED_TAGS else ""
                parts.append(f"{len(tags)} tag(s) ({shown}{more})")
            if self.untagged.get(repo):
                parts.append(f"{self.untagged[repo]} untagged manifest(s)")
            parts += [f"{n} {kind}(s)" for kind, n in sorted(self.other.get(repo, {}).items())]
            out[repo] = ", ".join(parts)
        return out


def overview(plan: Plan | Source) -> Overview:
    """One pass over the targets; the first FIRST kept entries and problems."""
    src = source(plan)
    tally = _Tally()
    for t in src.targets():
        tally.add(t)
    return Overview(
        header=src.header,
        by_repository=tally.by_repository(),
        what=tally.what(),
        images=tally.images(),
        kept_count=src.counts["kept"],
        kept=tuple(itertools.islice(src.kept(), FIRST)),
        problems_count=src.counts["problems"],
        problems=tuple(itertools.islice(src.problems(), FIRST)),
    )
