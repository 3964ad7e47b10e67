"""What a target is, as one digest: every path under it with its token (a link's content,
a file's size), and the push time of every tag in it. Two reads of a tree give a target
the same digest exactly when nothing under it was written meanwhile (a push, a re-push
of a tag with the same digest, a new tag in a repository), so an apply can tell a
target as planned from one that changed (pure)."""

from __future__ import annotations

import hashlib

from regplan.scan.inventory import Inventory
from regplan.scan.layout import split_repo

PREFIX = "sha256:"
CURRENT = "/current/link"


def _pushed(inventory: Inventory, path: str) -> float | None:
    """The push time of the tag whose ``current/link`` is ``path``."""
    found = split_repo(path)
    if found is None:
        return None
    repo, rest = found
    name = rest.removeprefix("_manifests/tags/").removesuffix(CURRENT)
    tag = inventory.repositories.get(repo)
    t = tag.tags.get(name) if tag is not None else None
    return t.pushed_at if t is not None else None


def of_target(inventory: Inventory, path: str) -> str:
    """The digest of ``path`` and everything under it in ``inventory``'s tree."""
    h = hashlib.sha256()
    for line in inventory.tree.lines_under(path):
        h.update(line.encode("utf-8", "surrogateescape") + b"\n")
        if line.split("\0", 1)[0].endswith(CURRENT):
            h.update(f"pushed {_pushed(inventory, line.split(chr(0), 1)[0])!r}\n".encode())
    return PREFIX + h.hexdigest()
