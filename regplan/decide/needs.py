"""What stays needs (pure): of the paths an apply is about to remove, those that something
staying in the tree still references, directly or through what it references.

"What stays" is every tag and manifest revision in the tree that is not being
removed: what the plan kept, what was pushed since, and what a re-decision would
remove but nobody approved. A staying tag needs its revision; a staying revision
needs its manifest's blob, its config and layers (the blobs and the repository's
layer links) and, for an index, its children's revisions; a revision whose manifest
cannot be read might need any blob its repository links, so all of them stay.
Keeping one path can make it a root in turn (a revision kept brings its blobs), so
this runs until nothing more is needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Set

from regplan.scan.inventory import Inventory, Repository
from regplan.scan.layout import (
    Digest,
    blob_dir,
    layer_dir,
    repo_dir,
    revision_dir,
    short_of,
    tag_dir,
)


def _holder(path: str, removing: Set[str]) -> str | None:
    """The path being removed that is ``path`` or holds it (a repository goes as one
    folder, or as its parts ``_manifests``, ``_layers``, ``_uploads`` when it holds
    another repository), or None."""
    while path:
        if path in removing:
            return path
        path = path.rpartition("/")[0]
    return None


def _roots(repo: Repository, removing: Set[str]) -> Iterator[tuple[Digest, str]]:
    """(revision, who needs it) of every staying tag and revision of ``repo``."""
    for name, tag in sorted(repo.tags.items()):
        if tag.current is not None and _holder(tag_dir(repo.name, name), removing) is None:
            yield tag.current, f"{repo.name}:{name}"
    for digest in sorted(repo.revisions):
        if _holder(revision_dir(repo.name, digest), removing) is None:
            yield digest, f"{repo.name}@{short_of(digest)}"


def _needs_of(inv: Inventory, repo: Repository, digest: Digest) -> Iterator[str]:
    """The paths one staying revision of ``repo`` needs."""
    yield revision_dir(repo.name, digest)
    yield blob_dir(digest)
    manifest = inv.manifests.get(digest)
    if manifest is None or not manifest.known:
        for blob in sorted(repo.layers):  # it might reference any of them: fail closed
            yield layer_dir(repo.name, blob)
            yield blob_dir(blob)
        return
    for blob in manifest.blobs:
        yield layer_dir(repo.name, blob)
        yield blob_dir(blob)
    for child in manifest.children:
        yield revision_dir(repo.name, child)


def _pass(inv: Inventory, removing: Set[str]) -> dict[str, str]:
    """Of ``removing``, what the tree without it needs (one pass), and who needs it."""
    needed: dict[str, str] = {}
    for name in sorted(inv.repositories):
        repo = inv.repositories[name]
        if repo_dir(name) in removing:
            continue
        for digest, by in _roots(repo, removing):
            for path in _needs_of(inv, repo, digest):
                held = _holder(path, removing)
                if held is not None and held not in needed:
                    needed[held] = by
    return needed


def needed(inv: Inventory, removing: Set[str]) -> dict[str, str]:
    """Every path of ``removing`` that must stay (with the image that needs it), so
    that whatever stays is whole once the rest is gone."""
    kept: dict[str, str] = {}
    left = set(removing)
    while found := _pass(inv, left):
        kept.update(found)
        left -= found.keys()
    return kept
