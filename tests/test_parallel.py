"""The walk in shares (forked children) finds exactly what one walk finds."""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import pickle
import signal
import struct
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from regplan.demo.samples import build_demo, build_scale
from regplan.errors import LockHeldError, RegplanError
from regplan.progress import Progress
from regplan.scan import parallel
from regplan.scan.build import Side
from regplan.scan.inventory import Inventory
from regplan.scan.layout import blob_data
from regplan.storage.fs.fslock import StorageLock
from regplan.storage.fs.fsscan import digest, events, scan
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import forked


@pytest.fixture(scope="module")
def odd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree with something in every corner a share boundary could cut through."""
    root = tmp_path_factory.mktemp("shares")
    build_scale(root, repos=6, tags=3, pushes=2, index_every=2)
    build_demo(root / "nested")
    v2 = FsStorage.locate(root).v2
    # a second registry's repositories nested under a namespace, and odd corners
    os.rename(FsStorage.locate(root / "nested").v2 / "repositories", v2 / "repositories" / "deep")
    (v2 / "repositories" / "_odd" / "x").mkdir(parents=True)
    (v2 / "repositories" / "stray-file").write_text("x")
    (v2 / "blobs" / "sha256" / "stray-file").write_text("x")
    (v2 / "blobs" / "md5" / "ab").mkdir(parents=True)
    (v2 / "extra" / "deep").mkdir(parents=True)
    (v2 / "top-file").write_text("x")
    os.symlink("/etc", v2 / "repositories" / "evil")
    inv = scan(FsStorage.locate(root), jobs=1)
    some_blob = sorted(inv.blobs)[3]
    (v2 / blob_data(some_blob)).unlink()  # a missing blob: problems found across shares
    return root


@pytest.mark.parametrize("n", [2, 3])
def test_shares_are_disjoint_and_cover_the_walk(odd_root: Path, n: int) -> None:
    v2 = FsStorage.locate(odd_root).v2
    whole = list(events(v2, Side()))
    shares = [list(events(v2, Side(), share=(k, n))) for k in range(n)]
    assert all(shares)
    assert sorted(e for s in shares for e in s) == sorted(whole)


def test_one_namespace_still_splits(tmp_path: Path) -> None:
    """Shares are dealt by part (a repository, a blob shard), not by top folder."""
    build_scale(tmp_path, repos=16, tags=1, pushes=1)
    repos = FsStorage.locate(tmp_path).v2 / "repositories"
    (repos / "solo").mkdir()
    for team in [p for p in repos.iterdir() if p.name.startswith("team")]:
        for svc in team.iterdir():
            svc.rename(repos / "solo" / svc.name)
        team.rmdir()
    v2 = FsStorage.locate(tmp_path).v2
    per_share = [
        {part for _, token, part in events(v2, Side(), share=(k, 2)) if "/solo/" in part}
        for k in range(2)
    ]
    assert all(per_share)
    assert not per_share[0] & per_share[1]
    assert len(per_share[0] | per_share[1]) == 16


@pytest.mark.parametrize("n", [2, 3])
def test_scan_in_shares_equals_one_scan(odd_root: Path, n: int) -> None:
    storage = FsStorage.locate(odd_root)
    one = scan(storage, jobs=1, mtimes=True)
    many = scan(storage, jobs=n, mtimes=True)
    assert many == one  # repositories, blobs, manifests, problems, created
    assert many.mtimes == one.mtimes
    assert many.tree.digest == one.tree.digest
    assert list(many.tree.items()) == list(one.tree.items())
    assert any("has no blob data" in p.message for p in many.problems)
    assert digest(storage, jobs=n) == one.tree.digest
    assert_one_object_per_digest(one)
    assert_one_object_per_digest(many)


def assert_one_object_per_digest(inv: Inventory) -> None:
    """Whichever share or manifest named a digest, it is one object (memory at a
    million files: a digest is named by a blob, links, tags and manifests)."""
    objects: dict[str, set[int]] = {}
    named = [*inv.blobs, *inv.manifests]
    for r in inv.repositories.values():
        named += [*r.revisions, *r.layers]
        for t in r.tags.values():
            named += [*t.history, *([t.current] if t.current else [])]
    for m in inv.manifests.values():
        named += [*m.blobs, *m.children]
    for d in named:
        objects.setdefault(d, set()).add(id(d))
    assert all(len(ids) == 1 for ids in objects.values())


def test_progress_counts_every_share(odd_root: Path) -> None:
    seen: list[int] = []
    scan(FsStorage.locate(odd_root), jobs=2, progress=lambda n, _: seen.append(n))
    assert seen
    assert seen == sorted(seen)  # never backwards (progress lines must not jump back)
    assert max(seen) >= len(list(events(FsStorage.locate(odd_root).v2, Side()))) // 2


def test_a_share_count_caught_mid_write_does_not_lower_the_total() -> None:
    """The parent reads the children's counts while they write them; a reading
    that is lower than the last one (a half-written slot) is not believed."""
    counts = mmap.mmap(-1, 8 * 3)
    shown: list[int] = []
    report = parallel._own_progress(counts, 3, lambda n, _: shown.append(n))
    assert report is not None
    struct.pack_into("2q", counts, 8, 100, 200)
    report(5, 0)
    counts[8:16] = bytes(8)  # share 1's slot caught between zero-fill and value
    report(6, 0)
    struct.pack_into("2q", counts, 8, 120, 210)
    report(7, 0)
    assert shown == [305, 306, 337]


def _fails_in_child(k: int, n: int, progress: object) -> int:
    if k == 1:
        raise ValueError("child says no")
    return k


def _dies_in_child(k: int, n: int, progress: object) -> int:
    if k == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return k


def test_a_childs_error_is_raised_here() -> None:
    assert parallel.run(lambda k, n, p: k * 10, 3) == [0, 10, 20]
    with pytest.raises(ValueError, match="child says no"):
        parallel.run(_fails_in_child, 2)
    with pytest.raises(RegplanError, match="died: killed by signal 9"):
        parallel.run(_dies_in_child, 2)


def test_a_child_that_dies_writing_its_result_is_a_one_line_error() -> None:
    """Half a result (the child killed mid-write) is reported like a dead child,
    and the child is reaped."""
    payload = pickle.dumps((True, list(range(1000))), protocol=5)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.write(write_fd, payload[: len(payload) // 2])
        os._exit(9)
    os.close(write_fd)
    with pytest.raises(RegplanError, match=rf"walk worker \(pid {pid}\) died: exit status 9"):
        parallel._collect(pid, read_fd)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped


def _slow_child(
    pipe: tuple[int, int], heard: list[int], k: int, n: int, progress: Progress | None
) -> int:
    """Share 1 says its pid and waits to be stopped; share 0 goes on once it has
    heard it, and is interrupted (Ctrl-C) while it waits for share 1's result."""
    read_fd, write_fd = pipe
    if k == 1:
        os.write(write_fd, str(os.getpid()).encode())
        time.sleep(30)  # till it is stopped
    else:
        heard.append(int(os.read(read_fd, 32)))
        signal.setitimer(signal.ITIMER_REAL, 0.05)  # Ctrl-C while it waits for the child
    return k


def test_interrupted_while_waiting_stops_and_reaps_the_child() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    pipe = os.pipe()
    heard: list[int] = []
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            parallel.run(functools.partial(_slow_child, pipe, heard), 2)
    finally:
        signal.signal(signal.SIGALRM, previous)
        os.close(pipe[0])
        os.close(pipe[1])
    [child] = heard
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # reaped, not left running or a zombie


def test_jobs_small_trees_stay_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(parallel.JOBS_ENV, raising=False)
    assert parallel.jobs(None, large=False) == 1
    assert parallel.jobs(3, large=False) == 3
    assert parallel.jobs(None, large=True) == min(os.cpu_count() or 1, 4)
    monkeypatch.setenv(parallel.JOBS_ENV, "1")
    assert parallel.jobs(None, large=True) == 1


def test_the_lock_dies_with_its_holder_not_with_a_walk_child(tmp_path: Path) -> None:
    """A forked share holds a copy of the lock's file descriptor; it closes it at
    once, so a SIGKILLed apply's lock is free for the re-run at once."""
    lock_path = tmp_path / "state" / "lock"

    def hold_and_fork(out: BinaryIO) -> None:
        with StorageLock(lock_path, command="apply"):
            if os.fork() == 0:  # stands for a walk share that outlives its parent by a while
                # fork() returns here only after the after-fork hooks ran, so this line
                # means the child's copy of the lock is closed.
                out.write(f"{os.getpid()}\n".encode())
                time.sleep(30)  # till it is killed
                os._exit(0)
            time.sleep(60)  # till it is killed

    with forked(hold_and_fork) as (holder, said):
        child = int(said.readline())
        try:
            with pytest.raises(LockHeldError):
                StorageLock(lock_path, command="test").__enter__()
            os.kill(holder, signal.SIGKILL)
            os.waitpid(holder, 0)
            os.kill(child, 0)  # the child still runs
            with StorageLock(lock_path, command="test"):
                pass
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
