"""The filesystem's walk: the one reader of a registry tree on disk.

One walk with ``os.scandir`` yields every path with its token (tokens.py; link
contents are read once, data files are only stat'ed), in shares over both cores
(parallel.py); build.py turns the events into the inventory, reading each manifest
once through ``read_files``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from regplan import confine
from regplan.progress import Progress
from regplan.scan import fingerprint, parallel, tokens
from regplan.scan.build import Share, Side, build, share_of, strerror
from regplan.scan.inventory import Inventory, Problem, ProblemCode
from regplan.scan.layout import NAME_MAX, name_problem, printable
from regplan.scan.tokens import Event, Token
from regplan.scan.tree import digest_events
from regplan.storage.fs.fsstorage import FsStorage

log = logging.getLogger(__name__)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False  # the share that owns it reports it


def _child_part(rel_dir: str, inherited: str | None, name: str, rel: str) -> tuple[str, str | None]:
    """(part of ``rel``, part its children inherit or None to decide per child).

    The same rule as layout.part_of, decided once per directory instead of per path.
    """
    if inherited is not None:
        return inherited, inherited
    if rel_dir == "":
        return rel, (rel if name not in ("blobs", "repositories") else None)
    if rel_dir == "blobs" or rel_dir.startswith("blobs/"):
        depth = rel.count("/")
        return rel, (rel if depth >= 2 else None)
    if name.startswith("_") and rel_dir != "repositories":
        return rel_dir, rel_dir  # inside repository rel_dir
    return rel, None


def events(
    v2: str | os.PathLike[str],
    side: Side,
    *,
    progress: Progress | None = None,
    mtimes: bool = False,
    share: tuple[int, int] = (0, 1),
) -> Iterator[Event]:
    """Every path below ``v2`` with its token and part, depth first; never follows symlinks.

    The hot loop (``os.scandir``, no pathlib). Depth first: a part's paths all come
    before its PART_END, so a consumer can finish a part and forget its paths.
    ``share=(k, n)``: the k-th of n disjoint shares, parts dealt out by a hash of their
    name; every share walks the folders above the parts.
    """
    k, n = share
    stack: list[tuple[str, str, str | None]] = [(os.fspath(v2), "", None)]
    while stack:
        abs_dir, rel_dir, inherited = stack.pop()
        if not abs_dir:  # the end of a part's subtree
            yield rel_dir, tokens.PART_END, rel_dir
            continue
        children = _listing(abs_dir, rel_dir, side)
        deal = n > 1 and inherited is None  # this folder's children start parts
        for entry in children:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            part, below = _child_part(rel_dir, inherited, name, rel)
            if deal and zlib.crc32(part.encode("utf-8", "surrogateescape")) % n != k:
                if below is None and _is_dir(entry):  # parts further down may be ours
                    stack.append((entry.path, rel, None))
                continue
            try:
                why = None
                if not (name.isascii() and name.isprintable() and len(name) <= NAME_MAX):
                    why = name_problem(name)
                if why is not None:  # never walked: a plan could not name what is inside
                    _note(side, rel, ProblemCode.UNNAMEABLE, f"name {why}: not walked")
                    token = tokens.UNNAMEABLE
                elif entry.is_dir(follow_symlinks=False):
                    yield rel, tokens.DIRECTORY, part
                    if part == rel:
                        stack.append(("", rel, None))
                    stack.append((entry.path, rel, below))
                    continue
                else:
                    token = _file_token(entry, rel, side, mtimes=mtimes)
            except OSError as e:
                token = tokens.UNREADABLE_FILE
                message = f"cannot read: {strerror(e)}"
                side.problems.append(
                    Problem(path=rel, code=ProblemCode.UNREADABLE, message=message)
                )
            yield rel, token, part
            if part == rel:  # a file that is a part of its own (a top-level file)
                yield rel, tokens.PART_END, rel
        side.count += len(children)
        if progress is not None:
            progress(side.count, 0)


def _listing(abs_dir: str, rel_dir: str, side: Side) -> list[os.DirEntry[str]]:
    """A folder's entries; none when it cannot be listed (a problem: kept whole)."""
    try:
        with os.scandir(abs_dir) as it:
            return list(it)
    except OSError as e:
        _note(side, rel_dir, ProblemCode.UNREADABLE, f"cannot list: {strerror(e)}")
        return []


def _note(side: Side, rel: str, code: ProblemCode, message: str) -> None:
    """A path not seen into: kept, with all it might hold."""
    side.blind.append(rel)
    side.problems.append(
        Problem(path=printable(rel), code=code, message=f"{message}; kept with all it might hold")
    )


def _file_token(entry: os.DirEntry[str], rel: str, side: Side, *, mtimes: bool) -> Token:
    """The token of an entry that is not a directory (OSError: it could not be read)."""
    name = entry.name
    if entry.is_symlink():
        side.blind.append(rel)
        side.problems.append(
            Problem(
                path=rel,
                code=ProblemCode.SYMLINK,
                message="symlink in registry storage (not followed, kept)",
            )
        )
        return tokens.symlink(os.readlink(entry.path))
    if not entry.is_file(follow_symlinks=False):
        side.blind.append(rel)
        mode = entry.stat(follow_symlinks=False).st_mode
        side.problems.append(
            Problem(
                path=rel,
                code=ProblemCode.SPECIAL_FILE,
                message=f"{confine.kind(mode)} in registry storage (never read, kept)",
            )
        )
        return tokens.SPECIAL
    if name == "link":
        content = confine.read_regular(entry.path, tokens.LINK_LIMIT)
        if tokens.dated(rel, name, mtimes=mtimes):
            side.mtimes[rel] = entry.stat(follow_symlinks=False).st_mtime
        return tokens.link(content.decode("utf-8", "replace"))
    st = entry.stat(follow_symlinks=False)
    if tokens.dated(rel, name, mtimes=mtimes):
        side.mtimes[rel] = st.st_mtime
    elif name == "startedat":
        text = confine.read_regular(entry.path, tokens.STARTEDAT_LIMIT)
        side.startedat[rel] = text.decode("utf-8", "replace").strip()
    return tokens.file(st.st_size)


def scan(
    storage: FsStorage,
    *,
    progress: Progress | None = None,
    created: bool = False,
    mtimes: bool = False,
    jobs: int | None = None,
) -> Inventory:
    """Walk the storage once and build the inventory.

    With ``created``, also read the image config of every tagged manifest for
    its ``created`` time (``--sort-by created``); with ``mtimes``, record the
    mtime of every link file and blob ``data`` (ages for ``--gc-min-age``).
    A large tree is walked in ``jobs`` shares at once (see parallel.jobs).
    """
    n = parallel.jobs(jobs, large=large(storage.v2))
    shares = parallel.run(functools.partial(_scan_share, storage.v2, mtimes), n, progress)
    return build(shares, functools.partial(read_files, os.fspath(storage.v2)), created, mtimes)


def digest(
    storage: FsStorage, *, progress: Progress | None = None, jobs: int | None = None
) -> fingerprint.TreeDigest:
    """The tree's digest as it is now, holding no more than one part's paths at a time
    in each share."""

    def share(k: int, n: int, progress: Progress | None) -> fingerprint.TreeDigest:
        return digest_events(events(storage.v2, Side(), progress=progress, share=(k, n)))

    n = parallel.jobs(jobs, large=large(storage.v2))
    return fingerprint.TreeDigest.join(parallel.run(share, n, progress))


def large(v2: str | os.PathLike[str]) -> bool:
    """Worth walking in shares: most of the 256 blob shards exist (hundreds of blobs)."""
    try:
        return len(os.listdir(os.path.join(v2, "blobs", "sha256"))) >= LARGE_SHARDS
    except OSError:
        return False


LARGE_SHARDS = 128


READERS = 8
"""Threads reading manifests once the disk is seen to be the bottleneck."""
COLD_READ = 50e-6
"""Seconds per read above which the files are coming from the disk, not the page cache
(measured here: about 11 us a file when cached, 200 us when not)."""


def read_files(
    top: str, paths: Sequence[str], limit: int = -1, batch: int = 1024
) -> Iterator[bytes | OSError]:
    """Each file's bytes (or why not), in order.

    The first batch is read here, timed. If those reads waited on the disk, the
    rest is read by a few threads at once (1.4x faster cold, measured); if they
    came from the page cache, threads would only queue on the GIL (3x slower
    warm), so the rest is read here too.
    """

    def read(path: str) -> bytes | OSError:
        try:
            return confine.read_regular(os.path.join(top, path), limit)
        except OSError as e:
            return e

    began = time.perf_counter()
    probe = [read(p) for p in paths[:batch]]
    cold = (time.perf_counter() - began) / max(1, len(probe)) > COLD_READ
    yield from probe
    rest = paths[batch:]
    if not cold:
        yield from map(read, rest)
        return
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for start in range(0, len(rest), batch):  # batches bound the futures held at once
            yield from pool.map(read, rest[start : start + batch])


def _scan_share(
    v2: str | os.PathLike[str], mtimes: bool, k: int, n: int, progress: Progress | None
) -> Share:
    side = Side()
    evs = events(v2, side, progress=progress, mtimes=mtimes, share=(k, n))
    return share_of(evs, side, mtimes=mtimes, k=k)
