"""The path scheme of distribution's filesystem storage, and nothing else.

Paths here are POSIX strings relative to ``docker/registry/v2`` ("rel paths").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NewType

V2 = ("docker", "registry", "v2")
STATE_DIR = "regplan-state"
ROOTS = frozenset({"", "blobs", "repositories"})
"""Directories that are never removed, even when empty (rel paths)."""

_ALGORITHM = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_ENCODED = re.compile(r"[a-zA-Z0-9=_-]+")
DIGEST_SYNTAX = f"{_ALGORITHM.pattern}:{_ENCODED.pattern}"
"""What parse_digest takes, as a regular expression (RE2 reads it too: SQL checks)."""


_SHA256 = re.compile(r"sha256:[a-f0-9]{64}")


Digest = NewType("Digest", str)
"""A content digest such as ``sha256:ab12...``, checked on the way in by ``parse_digest``.

A plain ``str``: hashing, equality and sorting at C speed, 120 bytes for a
sha256 one (a ``str`` subclass took 168, in two allocations, and pickled as a
call with its own copy of the text); the planner holds hundreds of thousands.
"""


def parse_digest(text: str) -> Digest:
    """Parse ``alg:encoded``; raise ``ValueError`` for anything else."""
    if _SHA256.fullmatch(text):
        return Digest(text)
    alg, sep, enc = text.partition(":")
    if not sep or not _ALGORITHM.fullmatch(alg) or not _ENCODED.fullmatch(enc):
        # fullmatch: ``$`` matched before a trailing newline, which let "foo:abc\n" in
        raise ValueError(f"not a digest: {text[:80]!r}")
    if alg == "sha256":
        raise ValueError(f"not a sha256 digest: {text[:80]!r}")
    return Digest(text)


def encoded_of(digest: Digest) -> str:
    return digest.partition(":")[2]


def short_of(digest: Digest) -> str:
    """``sha256:`` and the first 12 characters: how messages name a digest."""
    alg, _, enc = digest.partition(":")
    return f"{alg}:{enc[:12]}"


_ATTACHED = re.compile(r"sha256-([a-f0-9]{64})(?:\.(.+))?")
ATTACHED_KINDS = {"sig": "signature", "att": "attestation", "sbom": "SBOM", "": "referrers"}
"""cosign's suffixes (configurable: any other suffix is named as it is) and the OCI
1.1 referrers fallback tag (no suffix), in words."""


def attached_subject(tag: str) -> Digest | None:
    """The subject of an attached tag (``sha256-<hex>[.<suffix>]``: a cosign signature,
    attestation or SBOM, or an OCI referrers fallback tag), or None for an image tag."""
    m = _ATTACHED.fullmatch(tag)
    return Digest(f"sha256:{m.group(1)}") if m else None


def attached_kind(tag: str) -> str:
    """What an attached tag holds, in words (``signature``, ``attestation`` ...)."""
    suffix = tag.partition(".")[2]
    return ATTACHED_KINDS.get(suffix, suffix)


def blob_dir(digest: Digest) -> str:
    alg, _, enc = digest.partition(":")
    return f"blobs/{alg}/{enc[:2]}/{enc}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def repo_dir(repo: str) -> str:
    return f"repositories/{repo}"


def tag_dir(repo: str, tag: str) -> str:
    return f"repositories/{repo}/_manifests/tags/{tag}"


def tag_index_dir(repo: str, tag: str, digest: Digest) -> str:
    return f"{tag_dir(repo, tag)}/index/{digest.replace(':', '/', 1)}"


def revision_dir(repo: str, digest: Digest) -> str:
    return f"repositories/{repo}/_manifests/revisions/{digest.replace(':', '/', 1)}"


def layer_dir(repo: str, digest: Digest) -> str:
    return f"repositories/{repo}/_layers/{digest.replace(':', '/', 1)}"


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


NAME_MAX = 255
"""Bytes in one path component (Linux, and what S3 keys are cut into here)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (ESC, CSI ...) and the bidi controls that reorder what is read."""


def name_problem(name: str) -> str | None:
    """Why a file name found in the storage cannot be named in a plan, or None.

    A plan is UTF-8 JSON whose paths are read, diffed and pasted by people:
    names that are not UTF-8, hold control characters (a newline would split a
    message or a line of INDEX.tsv) or are longer than a file system allows are
    never targets; whatever holds them is kept.
    """
    try:
        size = len(name) if name.isascii() else len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not UTF-8"
    if _CONTROL.search(name):
        return "has a control character"
    return "is longer than 255 bytes" if size > NAME_MAX else None


def printable(text: str) -> str:
    """``text`` with bytes that are not UTF-8 and control characters escaped (one line)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _UNPRINTABLE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_REPO = r"(?:[^/_][^/]*)(?:/[^/_][^/]*)*"
_DIGEST_PATH = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*/[a-zA-Z0-9=_-]+"
SHAPES = {
    "repository": re.compile(rf"repositories/{_REPO}(?:/(?:_manifests|_layers|_uploads))?"),
    "tag": re.compile(rf"repositories/{_REPO}/_manifests/tags/[^/]+"),
    "tag_index": re.compile(rf"repositories/{_REPO}/_manifests/tags/[^/]+/index/{_DIGEST_PATH}"),
    "revision": re.compile(rf"repositories/{_REPO}/_manifests/revisions/{_DIGEST_PATH}"),
    "layer_link": re.compile(rf"repositories/{_REPO}/_layers/{_DIGEST_PATH}"),
    "upload": re.compile(rf"repositories/{_REPO}/_uploads/[^/]+"),
    "blob": re.compile(
        r"blobs/[a-z0-9]+(?:[+._-][a-z0-9]+)*/([a-zA-Z0-9=_-]{2})/\1[a-zA-Z0-9=_-]*"
    ),
    "leftover": re.compile(
        rf"(?:repositories/{_REPO}/_(?:manifests|layers|uploads)|blobs)/(?:[^/]+/)+"
        r"[^/]+\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp"
    ),
    "empty_dir": re.compile(r"(?:blobs|repositories)/.+"),
}
"""The shape of a target's path by its kind: a re-signed plan still cannot move
``blobs/sha256`` (the whole blob store) as a "blob"."""


def path_problem(path: str, kind: str | None = None) -> str | None:
    """Why ``path`` may not be a target (of ``kind``), or None: it must lie under
    blobs/ or repositories/, with no empty, '.' or '..' component, no name a plan
    cannot hold, and the shape of its kind."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0] not in ("blobs", "repositories"):
        return "is not under blobs/ or repositories/"
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' component"
    if not (path.isascii() and path.isprintable() and max(map(len, parts)) <= NAME_MAX):
        for p in parts:  # the rare path that needs a closer look says which rule it breaks
            why = name_problem(p)
            if why is not None:
                return f"has a name that {why}"
    shape = SHAPES.get(kind) if kind is not None else None
    if kind is not None and shape is not None and not shape.fullmatch(path):
        return f"is not the path of a {kind.replace('_', ' ')}"
    return None


def group_by_part(paths: Iterable[str]) -> dict[str, list[str]]:
    """Paths by their fingerprint part (the walk builds the same grouping as it goes)."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(part_of(path), []).append(path)
    return groups
