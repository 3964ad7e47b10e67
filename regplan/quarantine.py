"""The disk effects of apply and rollback: moves by ``rename`` only, never copies.

``_rename`` is the single move primitive (the seam fault-injection tests patch).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from regplan.errors import ApplyError, StalePlanError

_rename = os.rename


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, creating ``dst``'s parents; never falls back to a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    _rename(src, dst)


def explain(e: OSError) -> str:
    if e.errno == errno.EXDEV:
        return "the quarantine is on another filesystem (regplan never copies)"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{e.strerror} (disk full)"
    return e.strerror or str(e)


def same_filesystem(a: Path, b: Path) -> None:
    """Refuse a quarantine on another filesystem than the storage."""
    da, db = os.stat(a).st_dev, os.stat(b).st_dev
    if da != db:
        raise ApplyError(
            f"quarantine {b} is on another filesystem than {a}: a move must be a rename, "
            "never a copy; keep regplan-state/ on the registry's filesystem"
        )


def real_dir(base: Path, rel: str) -> bool:
    """True when ``base/rel`` is a directory reached through real directories only.

    Raises when a symlink (or a non-directory) lies on the way: a signed plan
    still never moves anything through a symlink.
    """
    current = base
    for part in rel.split("/"):
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise StalePlanError(f"{current} is a symlink; regplan never follows symlinks")
        if not stat.S_ISDIR(st.st_mode):
            raise StalePlanError(f"{current} is not a directory")
    return True
