"""Run a read-only job in shares over both cores: share 0 here, the others in forked children.

The walk of a large registry is CPU-bound Python (threads would queue on the
GIL), so it is split by process. A child only reads the tree; it sends its
result back pickled through a pipe and reports progress through shared memory.
Nothing here writes to the registry.
"""

from __future__ import annotations

import mmap
import os
import pickle
import signal
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from regplan.errors import RegplanError
from regplan.progress import Progress

T = TypeVar("T")
Share = Callable[[int, int, Progress | None], T]
"""share(k, n, progress) does the k-th of n shares of the job."""

JOBS_ENV = "REGPLAN_JOBS"


def jobs(wanted: int | None, *, large: bool) -> int:
    """How many shares: ``wanted``, else ``REGPLAN_JOBS``, else the CPU count (at most
    4) for a ``large`` job and 1 for a small one (a fork costs more than it saves)."""
    if wanted is None:
        env = os.environ.get(JOBS_ENV, "")
        auto = min(os.cpu_count() or 1, 4) if large else 1
        wanted = int(env) if env.isdigit() else auto
    return max(1, wanted)


def run(share: Share[T], n: int, progress: Progress | None = None) -> list[T]:
    """Every share's result, in share order; a child's exception is raised here."""
    if n <= 1:
        return [share(0, 1, progress)]
    counts = mmap.mmap(-1, 8 * n)
    children: dict[int, int] = {}
    """pid -> read end of its pipe, for the children not reaped yet."""
    try:
        for k in range(1, n):
            # one by one: if a fork fails, the children so far are still reaped
            pid, fd = _fork(share, k, n, counts, progress is not None)
            children[pid] = fd
        results = [share(0, n, _own_progress(counts, n, progress))]
        # popped before collecting: whatever is left when one fails is stopped below
        results.extend(_collect(pid, children.pop(pid)) for pid in list(children))
        return results
    finally:
        for pid, fd in children.items():  # only after a failure: stop the rest
            os.close(fd)
            _stop(pid)
        counts.close()


def _own_progress(counts: mmap.mmap, n: int, progress: Progress | None) -> Progress | None:
    if progress is None:
        return None

    seen = [0] * (n - 1)

    def report(count: int, total: int) -> None:
        # a share's count only grows: a lower reading is a write caught halfway
        for i, value in enumerate(struct.unpack_from(f"{n - 1}q", counts, 8)):
            seen[i] = max(seen[i], value)
        progress(count + sum(seen), 0)

    return report


def _fork(share: Share[T], k: int, n: int, counts: mmap.mmap, report: bool) -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        return pid, read_fd
    # The child: do the share, send the result, and leave without running any of
    # the parent's exit handlers or flushing its buffers.
    status = 0
    try:
        os.close(read_fd)

        def progress(count: int, total: int) -> None:
            # one 8-byte copy: struct.pack_into zero-fills the slot before it
            # writes, and the parent reading in between saw 0
            counts[8 * k : 8 * k + 8] = struct.pack("q", count)

        try:
            result: tuple[bool, Any] = (True, share(k, n, progress if report else None))
        except BaseException as e:  # noqa: BLE001 - every failure goes to the parent
            result = (False, e)
        with os.fdopen(write_fd, "wb") as out:
            # pickled into the pipe as it goes: the payload is never held whole (a
            # failure halfway leaves half a result, which the parent reports as a death)
            pickle.dump(result, out, protocol=5)
    except BaseException:  # noqa: BLE001 - a child must never return into the caller
        status = 1
    finally:
        os._exit(status)


def _collect(pid: int, fd: int) -> Any:
    """The child's result; the child is reaped either way (and never signalled after)."""
    failed = False
    try:
        with os.fdopen(fd, "rb") as pipe:
            try:
                # unpickled as it comes: the whole payload is never held as bytes as well
                ok, value = pickle.load(pipe)  # noqa: S301 - our own forked child's result
            except Exception:  # noqa: BLE001 - nothing, or half a result: it died writing it
                failed = True
    except BaseException:  # interrupted while waiting (Ctrl-C): stop this child too
        _stop(pid)
        raise
    _, status = os.waitpid(pid, 0)
    if failed:
        raise RegplanError(f"a walk worker (pid {pid}) died: {_describe(status)}")
    if not ok:
        raise value
    return value


def _stop(pid: int) -> None:
    """Stop a child not reaped yet and reap it."""
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
