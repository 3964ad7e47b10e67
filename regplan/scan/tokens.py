"""The walk's events: what every reader of a registry tree (a filesystem, a bucket) yields.

An event is ``(rel path, token, part)``. The token is what the fingerprint records of
a path, and the one place its spelling is known is here:

- ``d``: a directory;
- ``l<content>``: a link file and what it says;
- ``f<size>``: any other file (``f0`` also for a file that could not be read: its
  problem is reported);
- ``s<target>``: a symlink, never followed;
- ``x``: a FIFO, socket or device, never opened;
- ``n``: an entry whose name a plan cannot hold (layout.name_problem), never walked;
- the empty token (PART_END): every path of ``part`` has been seen.

The spelling is part of the tree digest a plan records, so it never changes; a new
kind of entry is a new letter.
"""

from __future__ import annotations

from typing import NewType, TypeAlias

from regplan.scan import entries

Token = NewType("Token", str)
Event: TypeAlias = tuple[str, Token, str]
"""(rel path, token, part); an empty token closes ``part``."""

DIRECTORY = Token("d")
UNREADABLE_FILE = Token("f0")
UNNAMEABLE = Token("n")
SPECIAL = Token("x")
PART_END = Token("")

LINK_LIMIT = 4096
"""The bytes of a link file read: a digest is under 150."""
STARTEDAT_LIMIT = 200
"""The bytes of an upload's ``startedat`` read: an RFC 3339 time."""


def link(content: str) -> Token:
    return Token("l" + content)


def file(size: int) -> Token:
    return Token(f"f{size}")


def symlink(target: str) -> Token:
    return Token("s" + target)


def is_directory(token: str) -> bool:
    return token == DIRECTORY


def link_content(token: str) -> str | None:
    """What a link file says, or None when the token is not a link file's."""
    return token[1:] if token[:1] == "l" else None


def file_size(token: str) -> int | None:
    """A file's size, or None when the token is not a (non-link) file's."""
    return int(token[1:]) if token[:1] == "f" else None


def bytes_of(token: str) -> int:
    """What a path holds, in bytes: a file's size or a link's content."""
    size = file_size(token)
    if size is not None:
        return size
    content = link_content(token)
    return 0 if content is None else len(content)


def dated(rel: str, name: str, *, mtimes: bool) -> bool:
    """Whether a walk notes the time of the file at ``rel`` (its last segment ``name``):
    a tag's ``current/link`` always (its push time), and a temporary file a write left
    (its age, ``--leftovers-older-than``); with ``mtimes``, every link file and blob
    ``data`` too (the ages of ``--gc-min-age``)."""
    if name == "link":
        return mtimes or rel.endswith("/current/link")
    if name == "data":
        return mtimes
    return name.endswith(".tmp") and entries.stands_for(name) is not None
