"""The disk effects of apply and rollback: moves by ``rename`` only, never copies.

Every change to the tree and the records goes through a ``Disk``: its ``rename`` is the
one move, its ``write`` the journal's and the state file's. A store is given one; tests
wrap it to inject faults (as restic wraps a backend) instead of patching.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from regplan import confine
from regplan.errors import ApplyError, StalePlanError


class Disk:
    """The filesystem calls that change a registry on disk or its records."""

    def rename(self, src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dirs(paths: Iterable[str]) -> None:
    """fsync many directories; overlapped, since fsync waits on the disk, not the CPU."""
    todo = sorted(set(paths))
    if len(todo) < 8:
        for d in todo:
            fsync_dir(d)
        return
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(fsync_dir, todo))


def move(
    src: confine.OpenDirs,
    src_rel: str,
    dst: confine.OpenDirs,
    dst_rel: str,
    disk: Disk,
    *,
    file: bool = False,
) -> None:
    """Rename ``src/src_rel`` to ``dst/dst_rel``, creating ``dst_rel``'s missing parents;
    never a copy, and never through a symlink on either side.

    Both paths are resolved from directories held open, one component at a
    time without following links, at the moment of the rename: a folder swapped
    for a symlink after the preflight is refused, not followed out of the root.
    The source itself must be a real directory (a regular file with ``file``).
    """
    sfd, sname = src.parent(src_rel)
    st = os.stat(sname, dir_fd=sfd, follow_symlinks=False)
    if not (stat.S_ISREG if file else stat.S_ISDIR)(st.st_mode):
        wanted = "regular file" if file else "directory"
        raise confine.NotConfined(
            errno.ENOTDIR, f"is a {confine.kind(st.st_mode)}, not a {wanted}", src_rel
        )
    dfd, dname = dst.parent(dst_rel, create=True)
    disk.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
    src.forget(src_rel)


def explain(e: OSError) -> str:
    if isinstance(e, confine.NotConfined):
        return f"{e.filename}: {e.strerror}"
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


def real_dir(
    base: str | os.PathLike[str], rel: str, checked: set[str] | None = None, *, file: bool = False
) -> bool:
    """True when ``base/rel`` is a directory (a regular file with ``file``) reached
    through real directories only.

    Raises when a symlink (or a non-directory) lies on the way: a signed plan
    still never moves anything through a symlink. ``checked`` remembers the
    ancestors already seen to be real directories, across calls.
    """
    parts = rel.split("/")
    prefix = os.fspath(base)
    for i, part in enumerate(parts):
        prefix = f"{prefix}/{part}"
        last = i == len(parts) - 1
        if not last and checked is not None and prefix in checked:
            continue
        try:
            st = os.lstat(prefix)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise StalePlanError(f"{prefix} is a symlink; regplan never follows symlinks")
        if last and file:
            if not stat.S_ISREG(st.st_mode):
                raise StalePlanError(f"{prefix} is not a regular file")
        elif not stat.S_ISDIR(st.st_mode):
            raise StalePlanError(f"{prefix} is not a directory")
        if not last and checked is not None:
            checked.add(prefix)
    return True
