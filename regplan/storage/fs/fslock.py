"""One apply, rollback or purge at a time per storage: an exclusive ``flock``.

The kernel drops the lock when its holder dies (even by SIGKILL), so a crash
never leaves a stale lock behind; the holder's details are only for the message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from regplan import confine
from regplan.errors import ApplyError, LockHeldError
from regplan.storage.fs.fsops import explain

_HELD: set[int] = set()
"""Lock descriptors this process holds."""


def _close_in_child() -> None:
    """A forked child (a walk share) closes its copies of held locks at once: a lock
    must die with its holder, not live on in a child that outlives it for a while."""
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class StorageLock:
    def __init__(self, path: Path, *, command: str) -> None:
        self.path = path
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> StorageLock:
        try:
            if os.path.lexists(self.path.parent):
                confine.real_directory(self.path.parent)
            else:
                self.path.parent.mkdir()
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise confine.NotConfined(errno.EINVAL, "not a regular file", str(self.path))
        except OSError as e:
            raise ApplyError(f"cannot take the lock {self.path}: {explain(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(fd)
            os.close(fd)
            raise LockHeldError(f"another regplan {holder} holds {self.path}") from None
        info = {
            "command": self.command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass  # the holder's details are only for another process's message (disk full)
        self._fd = fd
        _HELD.add(fd)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            _HELD.discard(self._fd)
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _describe(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{info['command']} (pid {info['pid']} on {info['host']}, since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "process"
