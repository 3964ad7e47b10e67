"""``regplan why PLAN REF``: what a plan does to one image, digest or path. Pure.

REF is ``repo:tag``, ``repo@sha256:...``, ``sha256:...`` (any repository) or a
storage path (relative to ``docker/registry/v2``). The answer is *removed*
(every target it causes, with its reason), *kept* (why, and what keeps it) or
*untouched*.
"""

from __future__ import annotations

import enum

import attrs

from regplan.layout import blob_dir, parse_digest, repo_dir, revision_dir, tag_dir
from regplan.plan import Kept, Plan, Target
from regplan.planfile import Source, source


class Verdict(enum.Enum):
    REMOVED = "removed"
    KEPT = "kept"
    UNTOUCHED = "untouched"


@attrs.frozen(kw_only=True)
class Answer:
    ref: str
    verdict: Verdict
    targets: tuple[Target, ...] = ()
    """What goes because of REF (itself first), in the plan's order."""
    kept: tuple[Kept, ...] = ()


def _parse(ref: str) -> tuple[list[str], set[str]]:
    """(paths that are REF itself, names the plan's refs use for it)."""
    if ref.startswith(("blobs/", "repositories/")):
        return [ref.rstrip("/")], set()
    if ref.startswith("sha256:"):
        digest = parse_digest(ref)
        return [blob_dir(digest)], {ref}
    name, at, digest_text = ref.partition("@")
    if at:
        digest = parse_digest(digest_text)
        return [revision_dir(name, digest), repo_dir(name)], {ref}
    repo, colon, tag = ref.rpartition(":")
    if colon and repo and "/" not in tag:
        return [tag_dir(repo, tag), repo_dir(repo)], {ref}
    return [repo_dir(ref)], {ref}


def _covers(target: str, path: str) -> bool:
    """``target`` is ``path`` or a folder holding it."""
    return path == target or path.startswith(target + "/")


def why(plan: Plan | Source, ref: str) -> Answer:
    """Raise ValueError when REF is none of the forms above. One pass over the targets
    (and one over the kept entries when none is REF's): only the matches are held."""
    src = source(plan)
    paths, names = _parse(ref)
    bare = "/" + ref.replace(":", "/") if ref.startswith("sha256:") else None

    def is_itself(path: str) -> bool:
        return any(_covers(path, p) for p in paths) or (bare is not None and path.endswith(bare))

    itself: list[Target] = []
    caused: list[Target] = []
    for t in src.targets():
        if is_itself(t.path):
            itself.append(t)
        elif names & set(t.refs):
            caused.append(t)
    if itself or caused:
        return Answer(ref=ref, verdict=Verdict.REMOVED, targets=(*itself, *caused))
    kept = tuple(
        k
        for k in src.kept()
        if k.path in paths or names & set(k.refs) or (bare is not None and k.path.endswith(bare))
    )
    if kept:
        return Answer(ref=ref, verdict=Verdict.KEPT, kept=kept)
    return Answer(ref=ref, verdict=Verdict.UNTOUCHED)
