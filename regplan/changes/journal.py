"""The write-ahead journal of one apply, the same on every store.

``applies/<apply_id>/journal`` is JSON lines, each appended durably before what it
announces is done: a batch of moves (``move``, then ``moved``), the folders pruning
removes, with their modes (``rmdir``: a rollback makes them again), a rollback
(``rollback``) and its batches (``restored``). A rollback acts on the ``rmdir``
lines, so every line is checked as it is read back: one regplan never writes
(a path outside the tree, a missing field) means the journal was tampered with,
and nothing is changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from regplan.errors import ApplyError
from regplan.scan.layout import path_problem, printable
from regplan.storage.seam import Folder, Store

_FIELDS: dict[str, tuple[frozenset[str], ...]] = {
    "move": (frozenset({"from", "to"}),),
    "moved": (frozenset({"to"}),),
    "rmdir": (frozenset({"path", "mode", "uid", "gid"}),),
    "rollback": (frozenset({"restore", "recreate"}), frozenset({"from", "to"})),
    "restored": (frozenset({"count"}),),
}
"""Each record's fields (a rollback's: as this version writes it, and as object stores'
journals wrote it before)."""


@attrs.frozen(kw_only=True)
class Record:
    op: str
    folder: Folder | None = None
    """What an ``rmdir`` line says was removed."""


def name(apply_id: str) -> str:
    return f"applies/{apply_id}/journal"


def line(op: str, **fields: Any) -> bytes:
    return json.dumps({"op": op, **fields}, sort_keys=True).encode() + b"\n"


def removed(folders: Sequence[Folder]) -> bytes:
    """The lines that announce pruned folders."""
    return b"".join(line("rmdir", path=f.path, mode=f.mode, uid=f.uid, gid=f.gid) for f in folders)


def _record(raw: object) -> Record:
    """A journal line as a Record, or ValueError saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 (one error type: a bad line)
    op = raw.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise ValueError(f"unknown op {str(op)[:40]!r}")
    fields = raw.keys() - {"op"}
    if fields not in _FIELDS[op]:
        raise ValueError(
            f"{op} record with fields {sorted(fields)}, expected {sorted(_FIELDS[op][0])}"
        )
    for field in fields - {"path"}:
        value = raw[field]
        if type(value) is not int or value < 0:
            raise ValueError(f"{field} is not a whole number")
    if op != "rmdir":
        return Record(op=op)
    path = raw["path"]
    why = path_problem(path) if isinstance(path, str) else "is not a string"
    if why is not None:
        raise ValueError(f"path {printable(str(path))[:120]!r} {why}")
    if raw["mode"] > 0o7777:
        raise ValueError("mode is not a permission mode")
    return Record(op=op, folder=Folder(path, raw["mode"], raw["uid"], raw["gid"]))


def read(store: Store, apply_id: str) -> list[Record]:
    """Every complete record, checked; a torn last line (a crash mid-write) is ignored.

    A line that parses but is not a record regplan writes (an absolute or ``..``
    path, a missing field) is an error: the journal was tampered with."""
    where = store.url(name(apply_id))
    lines = store.lines(name(apply_id))
    out = []
    for n, text in enumerate(lines, 1):
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError):
            if n == len(lines):
                break  # torn by a crash
            raise ApplyError(
                f"journal {where} line {n} is not JSON; it was tampered with"
            ) from None
        try:
            out.append(_record(raw))
        except ValueError as e:
            raise ApplyError(
                f"journal {where} line {n} is not a record regplan writes ({e}); "
                "it was tampered with, nothing was changed"
            ) from None
    return out


def pruned(records: Sequence[Record]) -> list[Folder]:
    """The folders an apply's pruning removed, parents first (as journaled)."""
    return [r.folder for r in records if r.folder is not None]
