"""Which of an apply's targets ``rollback --only REF`` restores: the images REF names that
the plan removed, with everything they need from the quarantine.

For each image: its tag (and the tag's history entries of it), its manifest revision
and the manifest's blob, its config and layers (the repository's layer links and the
blobs), an index's children, and what is attached to it (signatures, attestations,
referrers: the plan's images ``attached_to`` it), each with what it needs in turn.
A repository the apply removed whole is one folder: restoring an image of it restores
the folder. What the apply did not move is already there; only targets are chosen.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping

from regplan.errors import RegplanError
from regplan.plans.plan import Image, Target, TargetKind, Verdict
from regplan.plans.planfile import PlanStream
from regplan.scan import manifests
from regplan.scan.layout import (
    Digest,
    blob_dir,
    layer_dir,
    revision_dir,
    tag_dir,
    tag_index_dir,
)
from regplan.scan.manifests import Manifest
from regplan.storage.seam import Store, slot

MANIFEST_LIMIT = 4 << 20
"""distribution refuses manifests over 4 MiB."""

Reader = Callable[[Digest], Manifest | None]
"""A manifest by digest, from the quarantine or the storage (None: unreadable)."""


class NotRemovedError(RegplanError):
    """REF names nothing the apply removed (README: exit codes)."""

    exit_code = 8


def _matches(ref: str, image: Image) -> bool:
    repo, at, digest = ref.partition("@")
    if at:
        return image.repo == repo and (image.digest or "").startswith(digest) and len(digest) > 7
    if image.tag is not None and f"{image.repo}:{image.tag}" == ref:
        return True
    return image.repo == ref


def chosen(refs: Iterable[str], images: Iterable[Image]) -> list[Image]:
    """The removed images the refs name; NotRemovedError with the nearest names for a
    ref that names none."""
    removed = [i for i in images if i.verdict == Verdict.REMOVED]
    out: list[Image] = []
    for ref in refs:
        found = [i for i in removed if _matches(ref, i)]
        if not found:
            names = sorted({i.name for i in removed} | {i.repo for i in removed})
            near = difflib.get_close_matches(ref, names, n=5, cutoff=0.5)
            raise NotRemovedError(
                f"{ref} is not an image this apply removed"
                + (f"; nearest: {', '.join(near)}" if near else "")
            )
        out += found
    return out


class _Closure:
    def __init__(self, targets: Mapping[str, int], images: list[Image], read: Reader) -> None:
        self.targets, self.images, self.read = targets, images, read
        self.found: set[int] = set()
        self.seen: set[tuple[str, str]] = set()

    def take(self, path: str) -> None:
        """The target that is ``path`` or holds it (a repository removed whole, or as its
        parts when it holds another repository)."""
        while path:
            i = self.targets.get(path)
            if i is not None:
                self.found.add(i)
                return
            path = path.rpartition("/")[0]

    def image(self, image: Image) -> None:
        if image.tag is not None:
            self.take(tag_dir(image.repo, image.tag))
            if image.digest is not None:
                self.take(tag_index_dir(image.repo, image.tag, Digest(image.digest)))
        if image.digest is not None:
            self.manifest(image.repo, Digest(image.digest))

    def manifest(self, repo: str, digest: Digest) -> None:
        if (repo, digest) in self.seen:
            return
        self.seen.add((repo, digest))
        self.take(revision_dir(repo, digest))
        self.take(blob_dir(digest))
        m = self.read(digest)
        if m is not None:
            for blob in m.blobs:
                self.take(layer_dir(repo, blob))
                self.take(blob_dir(blob))
            for child in m.children:
                self.manifest(repo, child)
        for attached in self.images:
            if attached.attached_to == f"{repo}@{digest}":
                self.image(attached)


def closure(targets: Iterable[tuple[int, Target]], images: list[Image], refs: Iterable[str],
            read: Reader) -> set[int]:  # fmt: skip
    """The indices of the targets ``refs`` need restored."""
    paths = {t.path: i for i, t in targets if t.kind != TargetKind.EMPTY_DIR}
    walk = _Closure(paths, images, read)
    for image in chosen(refs, images):
        walk.image(image)
    return walk.found


def chooser(
    store: Store,
    apply_id: str,
    stored: Callable[[], Mapping[Digest, Manifest]],
) -> Callable[[PlanStream, tuple[str, ...]], set[int]]:
    """What ``rollback --only REF…`` restores of a plan: manifests read from the
    quarantine (a blob the apply moved), else from the storage (``stored``: read once,
    only when asked)."""

    def choose(plan: PlanStream, refs: tuple[str, ...]) -> set[int]:
        targets = list(enumerate(plan.targets()))
        blobs = {t.path: i for i, t in targets if t.kind == TargetKind.BLOB}
        found: list[Mapping[Digest, Manifest]] = []

        def read(digest: Digest) -> Manifest | None:
            i = blobs.get(blob_dir(digest))
            if i is not None:
                try:
                    return manifests.parse(store.read(f"{slot(apply_id, i)}/data", MANIFEST_LIMIT))
                except FileNotFoundError:
                    pass  # restored already: it is in the storage
            if not found:
                found.append(stored())
            return found[0].get(digest)

        return closure(targets, list(plan.images()), refs, read)

    return choose
