"""The write side of a storage, as primitives over names and bytes.

The transaction (``regplan/changes/``) is written once over :class:`Store`: it names
every record, decides every step, batches, resumes, keeps the journal and refuses
what cannot go back; a store only does what it is told, on a filesystem
(``fs/fsstore.py``) or in a bucket (``objects/objstore.py``). Nothing here knows a
plan, a record or a journal's format: a target is an :class:`Item` (where it is,
which slot of the quarantine it goes to), a record is bytes under a name relative to
``regplan-state/``.

Names: ``applies/<apply_id>/<file>`` are an apply's records, ``quarantine/<apply_id>/``
its quarantine, where target ``n`` of the plan rests in :func:`slot` ``n``. ``v2`` paths
are relative to ``docker/registry/v2``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import IO, Protocol

import attrs

from regplan.errors import StorageError
from regplan.progress import Progress
from regplan.scan import fingerprint


@attrs.frozen
class Item:
    """One target as a store moves it: its ``v2`` path and its slot in the quarantine."""

    slot: int
    path: str
    file: bool = False
    """A single file (a write's leftover), not a folder."""
    repository: bool = False
    """The whole repository: it must hold no other repository (a namespace)."""
    tag: bool = False
    """A tag's folder: pushed again since, it is superseded, not in the way."""


class Where(enum.Enum):
    """Where a target is while an apply runs."""

    STORAGE = "storage"
    QUARANTINE = "quarantine"
    BOTH = "both"
    NEITHER = "neither"


class Holds(enum.Enum):
    """What a moved target's place holds when a rollback begins."""

    NOTHING = "nothing"
    ORIGINAL = "original"
    """What the apply moved, unchanged (not yet deleted by an interrupted apply, or put
    back by an interrupted rollback)."""
    SAME = "same"
    """Written again since the apply, the same bytes as its slot holds (a content-addressed
    blob, revision or layer link pushed again): it counts as restored."""
    OTHER = "other"
    """Something else written since the apply (a new push)."""


@attrs.frozen
class Folder:
    """An empty folder as pruning found it (what a rollback makes again)."""

    path: str
    mode: int
    uid: int
    gid: int


class MoveError(StorageError):
    """A batch of moves stopped part way, ``done`` of its targets moved (the message
    names the one that failed)."""

    def __init__(self, message: str, done: int) -> None:
        super().__init__(message)
        self.done = done


class Store(Protocol):
    """What the transaction asks of a storage's write side."""

    @property
    def where(self) -> str:
        """The storage, as messages name it."""
        ...

    @property
    def keeps_folders(self) -> bool:
        """Whether an empty folder is a thing here (a filesystem: yes; a bucket: no)."""
        ...

    def lock(self, command: str, break_lock: bool) -> AbstractContextManager[object]:
        """One apply, rollback or purge at a time (``break_lock``: take over a lock
        whose holder is gone, where a lock can outlive its holder)."""
        ...

    def renew(self) -> None:
        """Keep the lock (a lease) after a batch; LockHeldError when it was broken."""
        ...

    # -- records -------------------------------------------------------------------

    def url(self, name: str) -> str:
        """How messages name a record or a quarantine."""
        ...

    def names(self, prefix: str) -> list[str]:
        """The folders right under ``prefix`` (``applies/``), sorted; a link planted
        there is refused, never followed."""
        ...

    def read(self, name: str, limit: int) -> bytes:
        """A record's bytes (refused past ``limit``); FileNotFoundError when none."""
        ...

    def write(self, name: str, chunks: Iterable[bytes], *, new: bool = False) -> None:
        """Write a record durably, replacing it at once (``new``: it must not exist)."""
        ...

    def reader(self, name: str) -> AbstractContextManager[IO[bytes]]:
        """A record to stream (a plan); FileNotFoundError when none."""
        ...

    def append(self, name: str, data: bytes) -> None:
        """Add lines to a journal, durably, before what they announce is done."""
        ...

    def lines(self, name: str) -> list[bytes]:
        """A journal's lines, in the order written (a line a crash tore is the last)."""
        ...

    # -- targets (the quarantine of apply ``apply_id``) --------------------------------

    def check(self, item: Item) -> None:
        """Before anything moves: StalePlanError when the target is gone or cannot be
        moved safely (through a link, a namespace)."""
        ...

    def prepare(self, apply_id: str) -> None:
        """Make the quarantine ready to take targets (on a filesystem: the same one)."""
        ...

    def taken(self, apply_id: str) -> str | None:
        """A slot of the quarantine that holds something (as messages name it), or None."""
        ...

    def locate(self, apply_id: str, items: Sequence[Item]) -> list[Where]:
        """Where each target is now, as a resumed apply needs it: STORAGE when a move
        finishes it (on a bucket, also when an interrupted copy left part in its slot),
        BOTH when something else is at its place and in its slot."""
        ...

    def in_slots(self, apply_id: str, items: Sequence[Item]) -> list[bool]:
        """Whether each target's slot holds something (a rollback moves it back)."""
        ...

    def move_out(self, apply_id: str, items: Sequence[Item]) -> None:
        """Move a batch of targets into their slots, durably before it returns; a
        batch interrupted anywhere is finished by moving what ``locate`` says is left."""
        ...

    def holds(self, apply_id: str, items: Sequence[Item]) -> list[Holds]:
        """What each moved target's place holds now, for a rollback to decide."""
        ...

    def move_back(self, apply_id: str, items: Sequence[tuple[Item, Holds]]) -> None:
        """Put a batch of targets back from their slots, durably before it returns: a
        place that ``holds`` the original or the SAME bytes is left as it is (a slot whose
        place holds the same is just emptied); never one that holds OTHER."""
        ...

    def empty_folders(self, path: str) -> list[Folder]:
        """An empty folder tree, parents first; ApplyError when a file is in it, [] when
        it is gone."""
        ...

    def remove_folders(self, folders: Sequence[Folder]) -> None:
        """Remove empty folders (children first)."""
        ...

    def make_folders(self, folders: Sequence[Folder]) -> None:
        """Make folders again as they were (parents first)."""
        ...

    def delete(self, apply_id: str, progress: Progress | None) -> None:
        """Delete a quarantine for good (what is left of it)."""
        ...

    def digest(self, progress: Progress | None) -> fingerprint.TreeDigest:
        """The tree's digest now."""
        ...


def slot(apply_id: str, index: int) -> str:
    """Where target ``index`` of an apply's plan rests, relative to ``regplan-state/``."""
    return f"quarantine/{apply_id}/{index:07d}"
