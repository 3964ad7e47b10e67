"""What the user asked for, and its resolution against an inventory (pure)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from datetime import timedelta

import attrs

from regplan.errors import SelectionError
from regplan.inventory import Inventory


@attrs.frozen(kw_only=True)
class ImageSpec:
    """``--image REPO[:TAG]``; both parts are shell-style globs."""

    repo: str
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageSpec:
        repo, sep, tag = text.rpartition(":")
        if sep and repo and tag and "/" not in tag:
            return cls(repo=repo, tag=tag)
        if not text or text.endswith(":"):
            raise SelectionError(f"--image {text!r}: expected REPO or REPO:TAG")
        return cls(repo=text, tag=None)

    def __str__(self) -> str:
        return self.repo if self.tag is None else f"{self.repo}:{self.tag}"


@attrs.frozen(kw_only=True)
class Selection:
    images: tuple[ImageSpec, ...] = ()
    untagged: tuple[str, ...] = ()
    prune: bool = False

    @property
    def empty(self) -> bool:
        return not (self.images or self.untagged or self.prune)


@attrs.frozen(kw_only=True)
class Resolved:
    """The concrete request: whole repositories, tags, and repositories to clear of untagged."""

    repos: Mapping[str, str]
    """repository -> reason it goes whole."""
    tags: Mapping[tuple[str, str], str]
    """(repository, tag) -> reason it goes."""
    untagged: Mapping[str, str]
    """repository -> the --untagged pattern that selected it."""


def _match_repos(pattern: str, names: list[str], flag: str) -> list[str]:
    found = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    if not found:
        hint = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise SelectionError(
            f"{flag} {pattern}: no repository matches (repositories: {hint or 'none'})"
        )
    return found


def resolve(selection: Selection, inventory: Inventory) -> Resolved:
    """Turn globs into names; a pattern that matches nothing is an error naming it."""
    names = sorted(inventory.repositories)
    repos: dict[str, str] = {}
    tags: dict[tuple[str, str], str] = {}
    for spec in selection.images:
        for repo in _match_repos(spec.repo, names, "--image"):
            if spec.tag is None:
                repos.setdefault(repo, f"requested: --image {spec}")
                continue
            available = sorted(inventory.repositories[repo].tags)
            found = [t for t in available if fnmatch.fnmatchcase(t, spec.tag)]
            if not found and "*" not in spec.repo and "?" not in spec.repo:
                hint = ", ".join(available[:10]) + (" …" if len(available) > 10 else "")
                raise SelectionError(
                    f"--image {spec}: {repo} has no tag matching {spec.tag!r} "
                    f"(tags: {hint or 'none'})"
                )
            for tag in found:
                tags.setdefault((repo, tag), f"requested: --image {spec}")
    if selection.images and not repos and not tags:
        raise SelectionError(
            "--image: no tag matches " + ", ".join(str(s) for s in selection.images)
        )
    untagged: dict[str, str] = {}
    for pattern in selection.untagged:
        for repo in _match_repos(pattern, names, "--untagged"):
            untagged.setdefault(repo, pattern)
    # Removing the last tag removes the repository, as the one-file script does.
    for repo in {r for r, _ in tags}:
        if repo in repos:
            continue
        all_tags = set(inventory.repositories[repo].tags)
        gone = {t for r, t in tags if r == repo}
        if all_tags <= gone:
            listed = ", ".join(sorted(gone))
            repos[repo] = f"last tag removed ({listed}): the whole repository goes"
    tags = {k: v for k, v in tags.items() if k[0] not in repos}
    untagged = {k: v for k, v in untagged.items() if k not in repos}
    return Resolved(repos=repos, tags=tags, untagged=untagged)


_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w``."""
    m = _AGE.match(text.strip())
    if m is None:
        raise SelectionError(f"age {text!r}: expected a number and a unit (s, m, h, d, w), e.g. 7d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
