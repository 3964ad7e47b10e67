"""The write-ahead journal and the state file of one apply on a filesystem.

Layout: ``regplan-state/applies/<apply_id>/`` holds ``plan.json`` (the plan's
bytes as applied), ``journal`` (JSON lines, appended and fsynced before the
moves they announce) and ``state.json`` (replaced atomically).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import attrs

from regplan import confine
from regplan.changes.records import ApplyRecord, parse_state, state_bytes
from regplan.errors import ApplyError
from regplan.plans import codec
from regplan.scan.layout import path_problem, printable
from regplan.storage.fs.fsops import Disk, fsync_dir

_converter = codec.make_converter()


def _disk_error(what: str, e: OSError) -> ApplyError:
    hint = " (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    reason = f"{e.filename}: {e.strerror}" if isinstance(e, confine.NotConfined) else e.strerror
    return ApplyError(f"cannot write {what}: {reason}{hint}")


class Journal:
    """Append-only JSON lines; ``append`` returns once the records are on disk."""

    def __init__(self, path: Path, disk: Disk) -> None:
        self.path, self.disk = path, disk
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise _disk_error(f"journal {path}", e) from None

    def append(self, *records: dict[str, Any]) -> None:
        data = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in records)
        try:
            view = memoryview(data)
            while view:
                n = self.disk.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except OSError as e:
            raise _disk_error(f"journal {self.path}", e) from None

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@attrs.frozen(kw_only=True)
class Record:
    """One journal line, checked: regplan acts on ``rmdir`` lines when it rolls back,
    so a line planted in the journal must not name anything outside the tree."""

    op: str
    path: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0


_FIELDS: dict[str, frozenset[str]] = {
    "move": frozenset({"from", "to"}),
    "moved": frozenset({"to"}),
    "rmdir": frozenset({"path", "mode", "uid", "gid"}),
    "rollback": frozenset({"restore", "recreate"}),
    "restored": frozenset({"count"}),
}


def _record(raw: object) -> Record:
    """A journal line as a Record, or ValueError saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 (one error type: a bad line)
    op = raw.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise ValueError(f"unknown op {str(op)[:40]!r}")
    fields = raw.keys() - {"op"}
    if fields != _FIELDS[op]:
        raise ValueError(
            f"{op} record with fields {sorted(fields)}, expected {sorted(_FIELDS[op])}"
        )
    for name in fields - {"path"}:
        value = raw[name]
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} is not a whole number")
    if op != "rmdir":
        return Record(op=op)
    path = raw["path"]
    why = path_problem(path) if isinstance(path, str) else "is not a string"
    if why is not None:
        raise ValueError(f"path {printable(str(path))[:120]!r} {why}")
    if raw["mode"] > 0o7777:
        raise ValueError("mode is not a permission mode")
    return Record(op=op, path=path, mode=raw["mode"], uid=raw["uid"], gid=raw["gid"])


def read_journal(path: Path) -> list[Record]:
    """Every complete record, checked; a torn last line (a crash mid-write) is ignored.

    A line that parses but is not a record regplan writes (an absolute or ``..``
    path, a missing field) is an error: the journal was tampered with.
    """
    try:
        data = confine.read_regular(os.fspath(path))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ApplyError(f"cannot read journal {path}: {e.strerror}") from None
    lines = data.splitlines()
    out = []
    for n, line in enumerate(lines, 1):
        try:
            raw = json.loads(line)
        except (ValueError, RecursionError):
            if n == len(lines):
                break  # torn by a crash
            raise ApplyError(f"journal {path} line {n} is not JSON; it was tampered with") from None
        try:
            out.append(_record(raw))
        except ValueError as e:
            raise ApplyError(
                f"journal {path} line {n} is not a record regplan writes ({e}); "
                "it was tampered with, nothing was changed"
            ) from None
    return out


def write_state(directory: Path, record: ApplyRecord, disk: Disk) -> None:
    """Replace ``state.json`` atomically and durably."""
    tmp = directory / "state.json.tmp"
    data = state_bytes(record)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[disk.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(directory / "state.json")
        fsync_dir(directory)
    except OSError as e:
        raise _disk_error(f"state {directory / 'state.json'}", e) from None


def read_state(directory: Path) -> ApplyRecord:
    try:
        confine.real_directory(directory)
        data = confine.read_regular(os.fspath(directory / "state.json"), 1 << 20)
    except OSError as e:
        raise ApplyError(f"cannot read {directory / 'state.json'}: {e.strerror}") from None
    return parse_state(data, str(directory / "state.json"))
