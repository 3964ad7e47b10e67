"""Touch nothing outside the root: paths reached without following links, files read
without blocking.

Whoever can write the storage can plant a symlink in place of any folder, or a
FIFO in place of any file, at any moment. So regplan never opens a path of the
storage or of its state folder by name from the top: it walks down from a
directory it holds open, one ``openat(O_NOFOLLOW | O_DIRECTORY)`` per component,
and renames, creates, chmods and chowns relative to the parent's descriptor.
A link met on the way is an error, never followed. Files are opened with
``O_NOFOLLOW | O_NONBLOCK`` and read only when ``fstat`` says they are regular.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from types import TracebackType

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotConfined(OSError):  # noqa: N818 (an OSError: callers already handle those)
    """A path inside the storage is a symlink, or not what it must be."""


def read_regular(path: str, limit: int = -1) -> bytes:
    """The bytes of a regular file (at most ``limit``); never blocks on a FIFO or a
    device, never follows a symlink. Raises OSError (NotConfined for a non-regular
    file) otherwise."""
    fd = os.open(path, _FILE_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotConfined(errno.EINVAL, f"not a regular file ({kind(st.st_mode)})", path)
        if limit >= 0:
            return os.read(fd, limit)
        chunks = []
        while chunk := os.read(fd, max(st.st_size + 1, 65536)):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def kind(mode: int) -> str:
    """A file type in words, for problems and errors."""
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "regular file" if stat.S_ISREG(mode) else "special file"


def open_dir(path: str, *, dir_fd: int | None = None) -> int:
    """Open a directory that is not a symlink (ELOOP/ENOTDIR become NotConfined)."""
    try:
        return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise NotConfined(
                e.errno, "a symlink or not a directory; never followed", path
            ) from None
        raise


def real_directory(path: str | os.PathLike[str]) -> None:
    """Raise NotConfined unless ``path`` itself is a real directory (not a symlink to one)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotConfined(errno.ENOTDIR, f"is a {kind(st.st_mode)}, not a real directory", path)


class OpenDirs:
    """Directories below one base, opened component by component without following links.

    The descriptors of parents are kept (a bounded cache), so the thousands of
    targets of one blob shard or one repository open their parents once.
    """

    def __init__(self, base: str | os.PathLike[str], *, limit: int = 256) -> None:
        self.base = os.fspath(base)
        self._fds: dict[str, int] = {"": open_dir(self.base)}
        self._limit = limit

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> OpenDirs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def dir(self, rel: str, *, create: bool = False) -> int:
        """The descriptor of directory ``rel`` ("" is the base); with ``create``, missing
        directories on the way are made (mode 0755 as distribution makes them)."""
        fd = self._fds.pop(rel, None)
        if fd is not None:
            self._fds[rel] = fd  # the most recently used come last: eviction spares them
            return fd
        parent, _, name = rel.rpartition("/")
        pfd = self.dir(parent, create=create)
        try:
            fd = open_dir(name, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):  # made meanwhile: open it all the same
                os.mkdir(name, 0o755, dir_fd=pfd)
            fd = open_dir(name, dir_fd=pfd)
        except NotConfined:
            raise NotConfined(
                errno.ELOOP, "a symlink or not a directory; never followed", f"{self.base}/{rel}"
            ) from None
        if len(self._fds) >= self._limit:
            self._evict()
        self._fds[rel] = fd
        return fd

    def parent(self, rel: str, *, create: bool = False) -> tuple[int, str]:
        """(descriptor of ``rel``'s parent, ``rel``'s last component)."""
        parent, _, name = rel.rpartition("/")
        return self.dir(parent, create=create), name

    def forget(self, rel: str) -> None:
        """Drop ``rel`` and everything below it from the cache (it was moved away)."""
        prefix = rel + "/"
        for key in [k for k in self._fds if k == rel or k.startswith(prefix)]:
            os.close(self._fds.pop(key))

    def _evict(self) -> None:
        """Close the least recently used half (never the base): a caller holds at most a
        few descriptors at once (a rename's two parents), all among the newest."""
        for key in [k for k in self._fds if k][: self._limit // 2]:
            os.close(self._fds.pop(key))
