"""What a plan does, image by image: every tag found, and what the request decided
for it and why. Pure: (inventory, resolved request, decision) in, records out.

The reviews are drawn from these records, so no view needs the storage: a tag a
rule keeps says which rule (``rank 2 of keep-last 3 by push time``), a removed
one the target's reason, and a tag in a repository no option selects is
*untouched*.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from regplan.decide.selection import Resolved
from regplan.plans.plan import Image, Kept, TargetKind, Verdict
from regplan.pulls.facts import Looks
from regplan.pulls.records import stamp
from regplan.scan.inventory import Inventory, Repository, Tag, subject_of
from regplan.scan.layout import (
    Digest,
    attached_kind,
    attached_subject,
    repo_dir,
    revision_dir,
    short_of,
    tag_dir,
)

FACTS = ("pushed", "created", "rule", "rank", "last_pulled", "pulls")
"""An image's facts as fields, each left out of the plan when unknown."""

MAX_DEPTH = 8
"""Index levels followed when sizing an image (an index of indexes is rare; a loop is
hostile)."""


def records(
    inv: Inventory,
    request: Resolved,
    removed: Iterable[tuple[str, str, str, tuple[str, ...]]],
    kept: Iterable[Kept],
) -> Iterator[Image]:
    """Every tag of every repository, and the untagged manifests the plan removes or a
    rule keeps, repository by repository (sort them with ``as_record``). ``removed``:
    (kind, path, reason, refs) of the plan's repository, tag and revision targets
    (``TargetSpool.image_targets``)."""
    gone: dict[str, str] = {}
    whole: dict[str, str] = {}
    said: dict[str, str] = {}  # one string for each reason: thousands of targets share one
    for kind, path, text, _ in removed:
        reason = said.setdefault(text, text)
        # a repository's _manifests alone: its folder holds repositories that stay
        if kind != TargetKind.REPOSITORY.value or path.endswith("/_manifests"):
            gone[path] = reason
        elif path.rpartition("/")[2] not in ("_layers", "_uploads"):
            whole[path] = reason  # the folder, and every repository nested in it
    why_kept = {k.path: k.reason for k in kept if "/_manifests/" in k.path}  # tags, revisions
    looks = None if request.pulls is None else Looks(request.pulls, inv)
    for name, repo in inv.repositories.items():
        whole_reason = _whole(name, whole, gone)
        for tag in repo.tags.values():
            path = tag_dir(name, tag.name)
            subject = subject_of(inv, repo, tag.name)
            if whole_reason is not None:
                verdict, reason = Verdict.REMOVED, whole_reason
            elif path in gone:
                verdict, reason = Verdict.REMOVED, gone[path]
            else:
                verdict, reason = _kept(request, why_kept, repo, tag.name, subject)
            found = _image(inv, repo, tag.name, tag.current, verdict, reason, subject)
            yield _with_facts(found, inv, request, tag, looks)
        yield from _untagged(inv, repo, whole_reason, gone, why_kept)


def as_record(image: Image, seq: int) -> tuple[Any, ...]:
    """``image`` as plain data for a ``spool.Sorted``, which sorts it into the plan's
    order: by repository, tags before untagged manifests, by name (``seq`` breaks ties,
    so that no two records compare past it)."""
    i = image
    key = (i.repo, i.tag is None, i.tag or "", i.digest or "", seq)
    facts = tuple(getattr(i, f) for f in FACTS)
    return (
        *key,
        i.tag,
        i.digest,
        i.verdict.value,
        i.reason,
        i.attached_to,
        i.kind,
        i.bytes,
        *facts,
    )


def raw_of(r: tuple[Any, ...]) -> dict[str, Any]:
    """A record as the plan file holds it (``codec.unstructure`` of ``from_record``),
    built without structuring it: the signing and the writing pass each read them all."""
    repo, _, _, _, _, tag, digest, verdict, reason, attached_to, kind, size, *facts = r
    out = {
        "repo": repo,
        "tag": tag,
        "digest": digest,
        "verdict": verdict,
        "reason": reason,
        "attached_to": attached_to,
        "kind": kind,
        "bytes": size,
    }
    out.update((k, v) for k, v in zip(FACTS, facts, strict=True) if v is not None)
    return out


def from_record(r: tuple[Any, ...]) -> Image:
    repo, _, _, _, _, tag, digest, verdict, reason, attached_to, kind, size, *facts = r
    return Image(
        repo=repo,
        tag=tag,
        digest=digest,
        verdict=Verdict(verdict),
        reason=reason,
        attached_to=attached_to,
        kind=kind,
        bytes=size,
        **dict(zip(FACTS, facts, strict=True)),
    )


def _whole(name: str, whole: Mapping[str, str], gone: Mapping[str, str]) -> str | None:
    """Why the repository goes whole (its folder, one of a parent's, or its own
    ``_manifests`` where other repositories nest in its folder), or None."""
    own = gone.get(f"{repo_dir(name)}/_manifests")
    if own is not None:
        return own
    parts = name.split("/")
    for i in range(len(parts), 0, -1):
        reason = whole.get(repo_dir("/".join(parts[:i])))
        if reason is not None:
            return reason
    return None


def _kept(
    request: Resolved,
    why_kept: Mapping[str, str],
    found: Repository,
    tag: str,
    subject: Digest | None,
) -> tuple[Verdict, str]:
    repo = found.name
    path = tag_dir(repo, tag)
    if path in why_kept:
        return Verdict.KEPT, why_kept[path]
    note = request.tag_notes.get((repo, tag))
    if note is not None:
        return Verdict.KEPT, note
    if repo in request.selected:
        flag = request.selected[repo]
        if subject is not None:
            named = sorted(t.name for t in found.tags.values() if t.current == subject)
            image = f"{repo}:{named[0]}" if named else f"{repo}@{short_of(subject)}"
            return Verdict.KEPT, f"stays with its image {image}"
        if flag.startswith("--untagged"):
            return Verdict.KEPT, f"tagged: {flag} takes only manifests no tag reaches"
        return Verdict.KEPT, f"not removed by {flag}"
    return Verdict.UNTOUCHED, "no option of the request selects this repository"


def _untagged(
    inv: Inventory,
    repo: Repository,
    whole_reason: str | None,
    gone: Mapping[str, str],
    why_kept: Mapping[str, str],
) -> list[Image]:
    """The manifests no tag points to that the plan removes, or that a rule looked at
    and keeps (``--untagged``: an index child, a referrer, a protected one)."""
    pointed = {t.current for t in repo.tags.values()}
    out = []
    for d in sorted(repo.revisions - pointed):
        path = revision_dir(repo.name, d)
        if whole_reason is not None:
            verdict, reason = Verdict.REMOVED, whole_reason
        elif path in gone:
            verdict, reason = Verdict.REMOVED, gone[path]
        elif path in why_kept:
            verdict, reason = Verdict.KEPT, why_kept[path]
        else:
            continue
        out.append(_image(inv, repo, None, d, verdict, reason))
    return out


def _image(
    inv: Inventory,
    repo: Repository,
    tag: str | None,
    digest: Digest | None,
    verdict: Verdict,
    reason: str,
    subject: Digest | None = None,
) -> Image:
    if tag is None:
        kind = "untagged"
    elif subject is None:
        kind = "image"
    else:  # a cosign tag says what it holds; an accessory by subject is one
        kind = attached_kind(tag) if attached_subject(tag) else "accessory"
    return Image(
        repo=repo.name,
        tag=tag,
        digest=digest,
        verdict=verdict,
        reason=reason,
        attached_to=f"{repo.name}@{subject}" if subject is not None else None,
        kind=kind or "attached",
        bytes=size(inv, digest) if digest is not None else 0,
    )


def _with_facts(
    image: Image, inv: Inventory, request: Resolved, tag: Tag, looks: Looks | None
) -> Image:
    """A tag's facts: when it was pushed, its config's ``created`` (when read), the
    retention rule that decided it with its rank, and with pull records its pulls."""
    rule, rank = request.decided.get((image.repo, tag.name), (None, None))
    created = inv.created.get(tag.current) if tag.current is not None else None
    pushed = (
        datetime.fromtimestamp(tag.pushed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if tag.pushed_at
        else None
    )
    seen = None if looks is None else looks.tag(inv.repositories[image.repo], tag.name)
    return attrs.evolve(
        image,
        pushed=pushed,
        created=created,
        rule=rule,
        rank=rank,
        last_pulled=None if seen is None else stamp(seen.last),
        pulls=None if looks is None else (0 if seen is None else seen.count),
    )


def size(inv: Inventory, digest: Digest) -> int:
    """The bytes of a manifest and all it references (children of an index too), each
    blob once; what the storage does not hold counts 0."""
    seen: set[Digest] = set()
    todo = [(digest, 0)]
    while todo:
        d, depth = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        m = inv.manifests.get(d)
        if m is None:
            continue
        seen.update(m.blobs)
        if depth < MAX_DEPTH:
            todo += [(c, depth + 1) for c in m.children]
    return sum(inv.blobs.get(d, 0) for d in seen)
