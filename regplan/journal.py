"""The write-ahead journal and the state file of one apply.

Layout: ``regplan-state/applies/<apply_id>/`` holds ``plan.json`` (the plan's
bytes as applied), ``journal`` (JSON lines, appended and fsynced before the
moves they announce) and ``state.json`` (replaced atomically).
"""

from __future__ import annotations

import enum
import errno
import json
import os
from pathlib import Path
from typing import Any

import attrs
import cattrs

from regplan import codec
from regplan.errors import ApplyError
from regplan.quarantine import fsync_dir

_write = os.write
"""The journal's write primitive (the seam full-disk tests patch)."""


class State(enum.Enum):
    APPLYING = "applying"
    APPLIED = "applied"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"
    PURGING = "purging"
    PURGED = "purged"


@attrs.frozen(kw_only=True)
class ApplyRecord:
    seq: int
    """Order of the applies in this storage (assigned under the lock)."""
    apply_id: str
    plan_id: str
    state: State
    root: str
    started_at: str
    updated_at: str
    targets: int
    bytes: int
    """Bytes the plan moves into quarantine (0 once rolled back or purged)."""
    note: str = ""


_converter = codec.make_converter()


def _disk_error(what: str, e: OSError) -> ApplyError:
    hint = " (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return ApplyError(f"cannot write {what}: {e.strerror}{hint}")


class Journal:
    """Append-only JSON lines; ``append`` returns once the records are on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, *records: dict[str, Any]) -> None:
        data = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in records)
        try:
            view = memoryview(data)
            while view:
                n = _write(self._fd, view)
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


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a torn last line (a crash mid-write) is ignored."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def write_state(directory: Path, record: ApplyRecord) -> None:
    """Replace ``state.json`` atomically and durably."""
    tmp = directory / "state.json.tmp"
    data = json.dumps(_converter.unstructure(record), indent=2, sort_keys=True).encode() + b"\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[_write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(directory / "state.json")
        fsync_dir(directory)
    except OSError as e:
        raise _disk_error(f"state {directory / 'state.json'}", e) from None


def read_state(directory: Path) -> ApplyRecord:
    try:
        raw = json.loads((directory / "state.json").read_bytes())
        return _converter.structure(raw, ApplyRecord)
    except (OSError, ValueError, TypeError, KeyError, cattrs.BaseValidationError) as e:
        raise ApplyError(f"cannot read {directory / 'state.json'}: {e}") from None
