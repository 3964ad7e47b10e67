"""The path scheme of distribution's filesystem storage, and nothing else.

Paths here are POSIX strings relative to ``docker/registry/v2`` ("rel paths").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import attrs

from regplan.errors import StorageError

V2 = ("docker", "registry", "v2")
STATE_DIR = "regplan-state"
ROOTS = frozenset({"", "blobs", "repositories"})
"""Directories that are never removed, even when empty (rel paths)."""

_ALGORITHM = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*$")
_ENCODED = re.compile(r"^[a-zA-Z0-9=_-]+$")
_HEX = re.compile(r"^[a-f0-9]+$")


_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


class Digest(str):
    """A content digest such as ``sha256:ab12...``.

    A ``str`` (hashing, equality and sorting at C speed: the planner handles
    hundreds of thousands), checked on the way in by ``parse``.
    """

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``alg:encoded``; raise ``ValueError`` for anything else."""
        if _SHA256.fullmatch(text):
            return cls(text)
        alg, sep, enc = text.partition(":")
        if not sep or not _ALGORITHM.match(alg) or not _ENCODED.match(enc):
            raise ValueError(f"not a digest: {text[:80]!r}")
        if alg == "sha256":
            raise ValueError(f"not a sha256 digest: {text[:80]!r}")
        return cls(text)

    @classmethod
    def of(cls, algorithm: str, encoded: str) -> Digest:
        return cls.parse(f"{algorithm}:{encoded}")

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def encoded(self) -> str:
        return self.partition(":")[2]

    @property
    def short(self) -> str:
        alg, _, enc = self.partition(":")
        return f"{alg}:{enc[:12]}"


@attrs.frozen
class Storage:
    """Where a registry keeps its data: ``root`` holds ``docker/``; ``v2`` the tree."""

    root: Path
    v2: Path

    @property
    def state(self) -> Path:
        return self.root / STATE_DIR

    @classmethod
    def locate(cls, path: Path) -> Storage:
        """Accept the registry's ``rootdirectory`` or its ``docker/registry/v2`` folder."""
        path = path.expanduser().absolute()
        if not path.is_dir():
            raise StorageError(f"{path}: no such directory (expected the registry's rootdirectory)")
        if path.parts[-3:] == V2:
            return cls(root=path.parents[2], v2=path)
        v2 = path.joinpath(*V2)
        if v2.is_dir():
            return cls(root=path, v2=v2)
        raise StorageError(
            f"{path} is not registry storage: expected {Path(*V2)} inside it "
            "(the rootdirectory of the filesystem driver) or the v2 folder itself"
        )


def blob_dir(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def repo_dir(repo: str) -> str:
    return f"repositories/{repo}"


def tag_dir(repo: str, tag: str) -> str:
    return f"repositories/{repo}/_manifests/tags/{tag}"


def tag_index_dir(repo: str, tag: str, digest: Digest) -> str:
    return f"{tag_dir(repo, tag)}/index/{digest.algorithm}/{digest.encoded}"


def revision_dir(repo: str, digest: Digest) -> str:
    return f"repositories/{repo}/_manifests/revisions/{digest.algorithm}/{digest.encoded}"


def layer_dir(repo: str, digest: Digest) -> str:
    return f"repositories/{repo}/_layers/{digest.algorithm}/{digest.encoded}"


def upload_dir(repo: str, uuid: str) -> str:
    return f"repositories/{repo}/_uploads/{uuid}"


def split_repo(rel: str) -> tuple[str, str] | None:
    """``repositories/a/b/_manifests/x`` -> ``("a/b", "_manifests/x")``; None outside a repo.

    Repository name components never start with ``_``, so the first such
    component ends the name (a tag may start with ``_``; it comes later).
    """
    parts = rel.split("/")
    if len(parts) < 3 or parts[0] != "repositories":
        return None
    for i in range(1, len(parts)):
        if parts[i].startswith("_"):
            if i == 1:
                return None
            return "/".join(parts[1:i]), "/".join(parts[i:])
    return None


def part_of(rel: str) -> str:
    """The fingerprint part a path belongs to: its repository, its blob shard, or its top folder.

    Parts let a stale plan name what changed: ``repositories/team/app`` or
    ``blobs/sha256/ab``.
    """
    if rel.startswith("repositories/"):
        split = split_repo(rel)
        if split is not None:
            return repo_dir(split[0])
        return rel  # an intermediate folder of nested names: its own part
    if rel.startswith("blobs/"):
        return "/".join(rel.split("/")[:3])
    return rel.split("/", 1)[0]


def group_by_part(paths: Iterable[str]) -> dict[str, list[str]]:
    """Paths by their fingerprint part (the walk builds the same grouping as it goes)."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(part_of(path), []).append(path)
    return groups
