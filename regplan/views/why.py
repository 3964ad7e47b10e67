"""``regplan why PLAN REF``: what a plan does to one image, repository, digest or path. Pure.

REF is ``repo:tag``, ``repo`` (a repository: its images removed and kept),
``repo@sha256:...``, ``sha256:...`` (any repository) or a storage path (relative
to ``docker/registry/v2``); a digest may be a unique prefix of 12 hex characters
or more, and a registry host in front is dropped (``whyref``). The answer is
*removed* (every target it causes, with its reason), *kept* (the rule that keeps
it, and what in the storage it holds), *untouched*, or *not found*: a reference
that was not in the registry when the plan was made, with the nearest names (a
misspelt name never passes as "untouched"). Plans made before plans recorded
their images cannot tell a missing name from an untouched one; they answer as
before.
"""

from __future__ import annotations

import difflib
import enum

import attrs

from regplan.plans.plan import Image, Kept, Plan, Target, TargetKind
from regplan.plans.plan import Verdict as ImageVerdict
from regplan.plans.planfile import Source, source
from regplan.scan.layout import blob_dir, parse_digest, repo_dir, revision_dir, split_repo, tag_dir
from regplan.views import whyref

NEAREST = 5
"""Names suggested for a reference that is not found."""


class Verdict(enum.Enum):
    REMOVED = "removed"
    KEPT = "kept"
    UNTOUCHED = "untouched"
    NOT_FOUND = "not found"


@attrs.frozen(kw_only=True)
class Answer:
    ref: str
    verdict: Verdict
    targets: tuple[Target, ...] = ()
    """What goes because of REF (itself first), in the plan's order."""
    kept: tuple[Kept, ...] = ()
    """What the storage keeps for REF (shared blobs, layer links...)."""
    images: tuple[Image, ...] = ()
    """REF's image records (a repository: all of its images), with their rules."""
    nearest: tuple[str, ...] = ()
    """For a reference not found: the nearest names the registry had."""


@attrs.frozen(kw_only=True)
class _Ref:
    paths: tuple[str, ...]
    """Paths that are REF itself (or hold it)."""
    names: frozenset[str]
    """Names the plan's refs use for it."""
    repo: str | None = None
    tag: str | None = None
    whole_repo: bool = False
    inside: str | None = None
    """A folder whose targets inside it are REF's (a repository, a storage path)."""


def _parse(ref: str) -> _Ref:
    if ref.startswith(("blobs/", "repositories/")):
        path = ref.rstrip("/")
        split = split_repo(path)
        if split is None and path.startswith("repositories/"):  # the repository itself
            return _repository(path.removeprefix("repositories/"), ref)
        return _Ref(paths=(path,), names=frozenset(), inside=path)
    if ref.startswith("sha256:"):
        return _Ref(paths=(blob_dir(parse_digest(ref)),), names=frozenset({ref}))
    name, at, digest_text = ref.partition("@")
    if at:
        digest = parse_digest(digest_text)
        return _Ref(
            paths=(revision_dir(name, digest), repo_dir(name)), names=frozenset({ref}), repo=name
        )
    repo, colon, tag = ref.rpartition(":")
    if colon and repo and "/" not in tag:
        return _Ref(
            paths=(tag_dir(repo, tag), repo_dir(repo)), names=frozenset({ref}), repo=repo, tag=tag
        )
    return _repository(ref, ref)


def _repository(name: str, ref: str) -> _Ref:
    return _Ref(
        paths=(repo_dir(name),),
        names=frozenset({ref}),
        repo=name,
        whole_repo=True,
        inside=repo_dir(name) + "/_",
    )


def _covers(target: str, path: str) -> bool:
    """``target`` is ``path`` or a folder holding it."""
    return path == target or path.startswith(target + "/")


def why(plan: Plan | Source, ref: str) -> Answer:
    """Raise ValueError when REF is none of the forms above. One pass over the image
    records, one over the targets, and one over the kept entries: only what matches
    is held."""
    src = source(plan)
    resolved = whyref.resolve(src, ref)
    if resolved is None:
        return Answer(ref=ref, verdict=Verdict.NOT_FOUND)
    ref = resolved
    r = _parse(ref)
    images, nearest = _records(src, r)
    if nearest is not None:
        return Answer(ref=ref, verdict=Verdict.NOT_FOUND, nearest=nearest)
    bare = "/" + ref.replace(":", "/") if ref.startswith("sha256:") else None

    def is_itself(path: str) -> bool:
        return (
            any(_covers(path, p) for p in r.paths)
            or (bare is not None and path.endswith(bare))
            or (r.inside is not None and path.startswith(r.inside))
        )

    itself: list[Target] = []
    caused: list[Target] = []
    for t in src.targets():
        if is_itself(t.path):
            itself.append(t)
        elif r.names & set(t.refs) or (r.whole_repo and any(_of(n, r.repo) for n in t.refs)):
            caused.append(t)
    kept = tuple(
        k
        for k in src.kept()
        if k.path in r.paths
        or r.names & set(k.refs)
        or (bare is not None and k.path.endswith(bare))
    )
    targets = (*itself, *caused)
    verdict = _verdict(images, r, targets, bool(kept))
    return Answer(ref=ref, verdict=verdict, targets=targets, kept=kept, images=tuple(images))


HOUSEKEEPING = frozenset({TargetKind.EMPTY_DIR, TargetKind.UPLOAD, TargetKind.LEFTOVER})
"""Storage a plan tidies inside a repository (empty folders, unfinished uploads, files
a write left): reported, and no image of it goes because of them."""


def housekeeping(answer: Answer) -> tuple[Target, ...]:
    """The answer's targets that are housekeeping: of HOUSEKEEPING's kinds, or every
    target when REF itself is not removed (what goes is then not REF's)."""
    if answer.verdict is not Verdict.REMOVED:
        return answer.targets
    return tuple(t for t in answer.targets if t.kind in HOUSEKEEPING)


def _of(name: str, repo: str | None) -> bool:
    """``name`` (``repo:tag``, ``repo@digest``) is an image of ``repo``."""
    return repo is not None and (name.startswith((f"{repo}:", f"{repo}@")))


def _records(src: Source, r: _Ref) -> tuple[list[Image], tuple[str, ...] | None]:
    """REF's image records, and, when the plan has records but none of REF, the nearest
    names (None: REF was found, or the plan cannot tell)."""
    if r.repo is None or not src.counts.get("images"):
        return [], None
    repos: set[str] = set()
    tags: list[str] = []
    found: list[Image] = []
    for image in src.images():
        repos.add(image.repo)
        if image.repo != r.repo:
            continue
        if image.tag is not None:
            tags.append(image.tag)
        by_digest = r.tag is None and f"{image.repo}@{image.digest}" in r.names
        if r.whole_repo or by_digest or (r.tag is not None and image.tag == r.tag):
            found.append(image)
    if r.repo not in repos:
        return [], tuple(difflib.get_close_matches(r.repo, sorted(repos), NEAREST, 0.5))
    if r.tag is not None and not found:
        near = difflib.get_close_matches(r.tag, sorted(tags), NEAREST, 0.5)
        return [], tuple(f"{r.repo}:{t}" for t in near)
    return found, None


def _verdict(images: list[Image], r: _Ref, targets: tuple[Target, ...], kept: bool) -> Verdict:
    """From the records when the plan has them (a tag kept by a rule is kept, whatever
    the storage shares; a repository is removed when an image of it, or its folder,
    goes, never for its housekeeping); from the targets and kept entries otherwise."""
    verdicts = {i.verdict for i in images}
    if r.whole_repo and r.repo is not None:
        folder = (repo_dir(r.repo), repo_dir(r.repo) + "/_manifests")
        goes = any(t.kind is TargetKind.REPOSITORY and t.path in folder for t in targets) or (
            not images and any(t.kind not in HOUSEKEEPING for t in targets)
        )
    else:
        goes = bool(targets) and not images
    if ImageVerdict.REMOVED in verdicts or goes:
        return Verdict.REMOVED
    if ImageVerdict.KEPT in verdicts:
        return Verdict.KEPT
    if images:
        return Verdict.UNTOUCHED
    return Verdict.KEPT if kept else Verdict.UNTOUCHED
