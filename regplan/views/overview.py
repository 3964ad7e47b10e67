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

from regplan.plans.plan import Image, Kept, Plan, PlanProblem, Target, TargetKind, Verdict
from regplan.plans.planfile import Source, source
from regplan.scan.layout import Digest, attached_kind, attached_subject, short_of, split_repo

FIRST = 200
"""Kept entries and problems an overview holds at the most (the longest view's cap)."""
NAMED_TAGS = 5
"""Tags named in a repository's line; the rest are counted."""
SHOWN_REPOS = 15
"""Repositories a review lists image by image; the rest are counted."""
SHOWN_IMAGES = 6
"""Images of each verdict listed per repository; the rest are counted."""
TOTAL_SHOWN = 10_000
"""Images an overview lists at the most, over all repositories (the HTML's rows)."""


WORDS = {
    "repository": ("repository folder", "repository folders"),
    "tag": ("tag", "tags"),
    "tag_index": ("tag history entry", "tag history entries"),
    "revision": ("manifest", "manifests"),
    "layer_link": ("layer link", "layer links"),
    "upload": ("unfinished upload", "unfinished uploads"),
    "leftover": ("leftover temporary file", "leftover temporary files"),
    "blob": ("blob", "blobs"),
    "empty_dir": ("empty folder", "empty folders"),
    "untagged manifest": ("untagged manifest", "untagged manifests"),
    "image": ("image", "images"),
    "directory": ("directory", "directories"),
}
"""A target kind (or another counted thing) in words: singular, plural."""


def counted(n: int, kind: str) -> str:
    """``1 layer link``, ``3 tag history entries``."""
    one, many = WORDS.get(kind, (kind, kind))
    return f"{n} {one if n == 1 else many}"


def _repo_of_ref(ref: str) -> str:
    for sep in ("@", ":", " "):
        if sep in ref:
            return ref.split(sep, 1)[0]
    return ref


def target_repo(target: Target) -> str:
    """The repository a target's bytes are counted under (blobs: their first reference)."""
    if target.kind is TargetKind.EMPTY_DIR:
        return "(empty folders)"  # --prune's: not what the request does to a repository
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
    image_records: ImagesOverview | None = None
    """What the plan does image by image (None: a plan made before plans recorded it)."""


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
            self.other[repo][t.kind.value] += 1

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
                parts.append(f"{counted(len(tags), 'tag')} ({shown}{more})")
            if self.untagged.get(repo):
                parts.append(counted(self.untagged[repo], "untagged manifest"))
            parts += [counted(n, kind) for kind, n in sorted(self.other.get(repo, {}).items())]
            out[repo] = ", ".join(parts)
        return out


def overview(plan: Plan | Source, image_cap: int = SHOWN_IMAGES) -> Overview:
    """One pass over the targets; the first FIRST kept entries and problems; the image
    records, the first ``image_cap`` of each verdict per repository."""
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
        image_records=images_overview(src, image_cap),
    )


@attrs.define
class RepoImages:
    """One repository's images as a review shows them: the first few of each verdict,
    and counts of all. An attached tag (signature, attestation ...) with its image's
    verdict is folded into that image's line (``v1 (+ signature)``); one without (an
    orphan, a signature kept while its image goes) is a line of its own."""

    name: str
    removed: list[Image] = attrs.field(factory=list)
    kept: list[Image] = attrs.field(factory=list)
    counts: dict[Verdict, int] = attrs.field(factory=lambda: defaultdict(int))
    bytes_removed: int = 0
    tags_of: dict[str, str] = attrs.field(factory=dict)
    """image (``repo@digest``) -> its first tag: how an attached tag names its image."""
    verdict_of: dict[str, Verdict] = attrs.field(factory=dict)
    attached: list[Image] = attrs.field(factory=list)
    """Attached tags, until ``finish`` folds them into their images' lines."""
    kinds_of: dict[str, list[str]] = attrs.field(factory=lambda: defaultdict(list))
    """image (``repo@digest``) -> the kinds of its folded attached tags."""

    def add(self, image: Image, cap: int) -> bool:
        """Count ``image``; list it when its verdict has fewer than ``cap`` listed (True)."""
        if image.attached_to is not None:
            self.attached.append(image)
            return False
        if image.digest:
            self.verdict_of.setdefault(f"{image.repo}@{image.digest}", image.verdict)
            if image.tag is not None:
                self.tags_of.setdefault(f"{image.repo}@{image.digest}", image.tag)
        return self._count(image, cap)

    def _count(self, image: Image, cap: int) -> bool:
        self.counts[image.verdict] += 1
        if image.verdict is Verdict.REMOVED:
            self.bytes_removed += image.bytes
        shown = self.removed if image.verdict is Verdict.REMOVED else self.kept
        if image.verdict is not Verdict.UNTOUCHED and len(shown) < cap:
            shown.append(image)
            return True
        return False

    def finish(self, cap: int) -> int:
        """Fold the attached tags in, then drop what no listed line needs; how many more
        lines it lists."""
        listed = 0
        for image in self.attached:
            subject = image.attached_to or ""
            if self.verdict_of.get(subject) is image.verdict:
                self.kinds_of[subject].append(image.kind)
            else:
                listed += self._count(image, cap)
        shown = [*self.removed, *self.kept]
        named = {f"{i.repo}@{i.digest}" for i in shown} | {i.attached_to for i in shown}
        self.tags_of = {k: v for k, v in self.tags_of.items() if k in named}
        self.kinds_of = defaultdict(list, {k: v for k, v in self.kinds_of.items() if k in named})
        self.attached, self.verdict_of = [], {}
        return listed

    @property
    def touched(self) -> bool:
        return bool(self.counts[Verdict.REMOVED] or self.counts[Verdict.KEPT])

    def label(self, image: Image) -> str:
        """``v1``, ``@sha256:43d63be8dd5f (untagged)``, ``signature of v1``."""
        if image.attached_to is not None:
            subject = self.tags_of.get(image.attached_to)
            of = subject or "@" + short_of(Digest(image.attached_to.partition("@")[2]))
            return f"{image.kind} of {of}"
        name = image.tag or f"@{short_of(Digest(image.digest or '?'))} (untagged)"
        kinds = sorted(self.kinds_of.get(f"{image.repo}@{image.digest}", ()))
        return f"{name} (+ {', '.join(kinds)})" if kinds else name

    def summary(self) -> str:
        """``removes 2 of 5 images, keeps 3``"""
        removed, kept = self.counts[Verdict.REMOVED], self.counts[Verdict.KEPT]
        total = removed + kept + self.counts[Verdict.UNTOUCHED]
        if not self.touched:
            return f"untouched ({total} images)"
        return f"removes {removed} of {total} images, keeps {kept}"


@attrs.frozen(kw_only=True)
class ImagesOverview:
    """The plan's image records, grouped for a review (None for plans made before
    plans recorded them)."""

    repos: Sequence[RepoImages]
    """Touched repositories: most bytes removed first, then by name."""
    removed: int
    kept: int
    untouched_repos: int
    untouched_images: int
    with_pulls: bool = False
    """The plan was made with pull records (``--pulls``): each image shows its last pull."""
    pulls_began: str | None = None
    """When those records began (UTC)."""

    def pulled(self, image: Image) -> str:
        """``last pulled 2026-09-02 (23 pulls)``, ``not pulled since records began
        2026-08-01``; "" when the plan has no pull records."""
        if not self.with_pulls or image.pulls is None:
            return ""
        if image.last_pulled is None or not image.pulls:
            began = self.pulls_began
            return f"not pulled since records began {began[:10]}" if began else "not pulled"
        n = image.pulls
        return f"last pulled {image.last_pulled[:10]} ({n} pull{'' if n == 1 else 's'})"


def images_overview(
    src: Source, cap: int = SHOWN_IMAGES, total: int = TOTAL_SHOWN
) -> ImagesOverview | None:
    """One pass over the plan's image records (sorted by repository): per repository
    the first ``cap`` of each verdict, ``total`` listed at the most (what a review
    holds does not grow with the registry's images, only their counts do)."""
    if not src.counts.get("images"):
        return None
    pulls = src.header.request.pulls
    repos: dict[str, RepoImages] = {}
    listed = 0
    current: RepoImages | None = None
    for image in src.images():
        if current is None or current.name != image.repo:
            if current is not None:  # a repository's records come together: it is done
                listed += current.finish(cap if listed < total else 0)
            current = repos.setdefault(image.repo, RepoImages(image.repo))
        listed += current.add(image, cap if listed < total else 0)
    if current is not None:
        current.finish(cap if listed < total else 0)
    touched = [r for r in repos.values() if r.touched]
    untouched = [r for r in repos.values() if not r.touched]
    return ImagesOverview(
        repos=sorted(touched, key=lambda r: (-r.bytes_removed, r.name)),
        removed=sum(r.counts[Verdict.REMOVED] for r in touched),
        kept=sum(r.counts[Verdict.KEPT] for r in touched),
        untouched_repos=len(untouched),
        untouched_images=sum(r.counts[Verdict.UNTOUCHED] for r in repos.values()),
        with_pulls=pulls is not None,
        pulls_began=min((s.since for s in pulls.spans), default=None) if pulls else None,
    )
