"""The reference ``why`` is asked about, as a person copies it (pure, over a plan).

``show`` prints an untagged image as ``@sha256:`` and 12 hex characters, and
``kubectl`` prints images with their registry's host in front: ``why`` takes both.
A digest may be shortened to a prefix of at least PREFIX hex characters that names
one digest of the plan (its images, and the manifests and blobs it removes or keeps);
a host in front (``ghcr.io/``, ``localhost:5000/``) is dropped, as ``--protect`` does,
unless the plan has a repository of that very name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from regplan.plans.planfile import Source
from regplan.scan.layout import repo_dir

PREFIX = 12
"""Hex characters of a digest that a reference may be shortened to, at the least."""
SHOWN = 10
"""Candidates an ambiguous prefix's error names."""
_SHORT = re.compile(r"sha256:([0-9a-f]*)")


def resolve(src: Source, ref: str) -> str | None:
    """REF with a digest prefix made whole and a registry host dropped; None: a prefix
    that names no digest of the plan. ValueError: a prefix shorter than PREFIX, or one
    that names several digests (the error names them)."""
    ref = _without_host(src, ref)
    if ref.startswith("@sha256:"):  # as show prints an untagged image
        ref = ref[1:]
    name, at, text = ("", "", ref) if ref.startswith("sha256:") else ref.partition("@")
    short = _SHORT.fullmatch(text)
    if short is None or len(short.group(1)) == 64 or (name and not at):
        return ref
    if len(short.group(1)) < PREFIX:
        raise ValueError(
            f"{text[:80]!r} is too short: give at least {PREFIX} hex characters of the digest"
        )
    found = sorted(set(_digests(src, name or None, text)))
    if len(found) > 1:
        more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
        raise ValueError(f"{text} names {len(found)} digests: {', '.join(found[:SHOWN])}{more}")
    if not found:
        return None
    return f"{name}@{found[0]}" if name else found[0]


def _without_host(src: Source, ref: str) -> str:
    """``ghcr.io/team/api:v2`` -> ``team/api:v2`` (the first part has a dot or a port,
    or is localhost), unless the plan's images have a repository of the name as given."""
    if ref.startswith(("blobs/", "repositories/", "sha256:", "@")):
        return ref
    first, slash, rest = ref.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return ref
    name = ref.partition("@")[0]
    repo, colon, tag = name.rpartition(":")
    repo = repo if colon and "/" not in tag else name
    if any(i.repo == repo for i in src.images()):
        return ref
    return rest


def _digests(src: Source, repo: str | None, prefix: str) -> Iterator[str]:
    """Every digest of the plan that starts with ``prefix`` (of ``repo``'s images and
    folders, when given): image records, then the targets' and kept entries' paths."""
    for image in src.images():
        if image.digest and image.digest.startswith(prefix) and repo in (None, image.repo):
            yield image.digest
    inside = None if repo is None else repo_dir(repo) + "/"
    paths: Iterable[str] = (t.path for t in src.targets())
    for path in (*paths, *(k.path for k in src.kept())):
        if inside is not None and not path.startswith(inside):
            continue
        parts = path.split("/")
        if len(parts) >= 3 and "sha256" in parts[-3:-1]:
            digest = "sha256:" + parts[-1]
            if digest.startswith(prefix):
                yield digest
