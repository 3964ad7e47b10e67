"""The reader of an object-store registry: the same events as the filesystem walk,
from listings, and manifests through a local content-addressed cache.

A bucket has no folders: the walk's folder events are every key's parents
(so the tree digest is the filesystem's, minus empty folders). Listings run in
parallel, one per unit (a blob shard ``blobs/sha256/ab/``, or 16 shards of a first
digit ``blobs/sha256/a`` where shards hold few keys; a top-level repository name
``repositories/team/``), a page of at most 1,000 keys at a time. A link's content
mostly follows from its key: a layer, revision or tag index link of
``<alg>/<hex>/link`` holds ``<alg>:<hex>``, and the MD5 the listing gives
(``Obj.md5``: S3's single-part ETag, Azure's Content-MD5, GCS's md5Hash) proves it;
a tag's ``current/link`` is matched against its own index's digests the same way.
Only a link nothing matches is read (GET). What a manifest references is kept by
digest in the edges cache (scan/edges.py) once read: a later scan GETs only manifests
it has not seen, or whose listed size or MD5 is not the cached one's.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from regplan import confine
from regplan.errors import StorageError
from regplan.progress import Progress
from regplan.scan import edges, fingerprint, tokens
from regplan.scan.build import Side, build, share_of
from regplan.scan.inventory import Inventory, Problem, ProblemCode
from regplan.scan.layout import name_problem, part_of, printable
from regplan.scan.tokens import Event, Token
from regplan.scan.tree import digest_events
from regplan.storage.objects.bucket import MANIFEST_LIMIT, Bucket, Obj, ObjectStorage
from regplan.storage.objects.objtimes import Overlay

log = logging.getLogger(__name__)

JOBS = 16
"""Listings and GETs in flight at once (requests wait on the network, not the CPU)."""
AHEAD = JOBS + 4
"""Units of a walk read ahead of the one being used (all of them JOBS at a time)."""
T = TypeVar("T")
R = TypeVar("R")
HEX = frozenset("0123456789abcdef")
PROBE = 1000
"""Keys of the blob listing's first page (one request on every store)."""
FEW = 250
"""Keys per blob shard under which shards are listed 16 at a time (a unit of at most
~4,000 keys)."""
CACHE_ENV = edges.CACHE_ENV


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _units(bucket: Bucket, prefix: str, side: Side) -> tuple[list[str], list[Event]]:
    """The prefixes to list whole (relative to v2, with a trailing slash), and the events
    of the folders and keys above them."""
    top: list[Event] = []
    units: list[str] = []
    folders: set[str] = set()
    names, files = bucket.folders(prefix)
    loose = [("", o) for o in files]
    for name in names:
        if name not in ("blobs", "repositories"):
            units.append(f"{name}/")
            continue
        top.append((name, tokens.DIRECTORY, name))
        below, files2 = bucket.folders(f"{prefix}{name}/")
        loose += [(f"{name}/", o) for o in files2]
        if name == "repositories":
            units += [f"repositories/{r}/" for r in below]
            continue
        for alg in below:
            rel = f"blobs/{alg}"
            top.append((rel, tokens.DIRECTORY, part_of(rel)))
            shards, files3 = bucket.folders(f"{prefix}{rel}/")
            loose += [(f"{rel}/", o) for o in files3]
            units += _blob_units(bucket, f"{prefix}{rel}/", rel, shards)
            folders |= {f"{rel}/{s}" for s in shards}
    folders |= {u[:-1] for u in units if u.endswith("/")} | {ev[0] for ev in top}
    for base, o in loose:  # files beside the folders: each a part of its own
        rel = base + o.rel
        _refuse_file_and_folder(rel, folders, bucket, prefix)
        token = _file_token(rel, o, side, None, bucket, prefix, mtimes=False)
        top.append((rel, token, part_of(rel)))
    # a folder's part closes once its own paths are all in
    events: list[Event] = []
    parts: dict[str, list[Event]] = {}
    for ev in top:
        parts.setdefault(ev[2], []).append(ev)
    for part in sorted(parts):
        events += sorted(parts[part])
        events.append((part, tokens.PART_END, part))
    return units, events


def _blob_units(bucket: Bucket, at: str, rel: str, shards: list[str]) -> list[str]:
    """A unit per blob shard (``blobs/sha256/ab/``); or, where the shards are the
    registry's two hex digits and hold few keys each (the first page of the listing
    spans several), a unit per first digit (``blobs/sha256/a``): 16 listings instead of
    256. A unit's events are held till used, so only where they are few."""
    per_shard = [f"{rel}/{s}/" for s in shards]
    if len(shards) <= len(HEX) or not all(len(s) == 2 and set(s) <= HEX for s in shards):
        return per_shard
    probe = list(itertools.islice(bucket.objects(at), PROBE))
    spanned = len({o.rel.partition("/")[0] for o in probe})
    if len(probe) == PROBE and spanned * FEW < PROBE:
        return per_shard
    return [f"{rel}/{c}" for c in sorted({s[0] for s in shards})]


def _file_token(
    rel: str,
    o: Obj,
    side: Side,
    candidates: dict[str, str] | None,
    bucket: Bucket,
    prefix: str,
    *,
    mtimes: bool,
    times: Overlay | None = None,
) -> Token:
    """A key's token, as the filesystem walk gives its file (``times``: the original
    times of keys a rollback restored)."""
    name = rel.rpartition("/")[2]
    when = o.mtime if times is None else times.time(rel, o)
    if tokens.dated(rel, name, mtimes=mtimes):
        side.mtimes[rel] = when
    if name == "link":
        content = _inferred(rel, o, candidates)
        if content is None:
            try:
                content = bucket.get(prefix + rel, tokens.LINK_LIMIT).decode("utf-8", "replace")
            except FileNotFoundError:
                side.problems.append(
                    Problem(path=rel, code=ProblemCode.UNREADABLE, message="cannot read: gone")
                )
                return tokens.UNREADABLE_FILE
        return tokens.link(content)
    if name == "startedat":
        with contextlib.suppress(FileNotFoundError):  # gone since the listing: no age
            side.startedat[rel] = (
                bucket.get(prefix + rel, tokens.STARTEDAT_LIMIT).decode("utf-8", "replace").strip()
            )
    return tokens.file(o.size)


def _inferred(rel: str, o: Obj, candidates: dict[str, str] | None) -> str | None:
    """A link's content when its key and listed MD5 prove it, else None (then it is read)."""
    md5 = o.md5()
    if md5 is None:  # the store keeps no MD5 of it (a multipart S3 object, say)
        return None
    parts = rel.split("/")
    if len(parts) >= 3:
        text = f"{parts[-3]}:{parts[-2]}"
        if _md5(text) == md5:
            return text
    if candidates is not None and parts[-2] == "current":
        return candidates.get(md5)
    return None


def _listed_unit(bucket: Bucket, prefix: str, unit: str) -> tuple[list[Obj], str, set[str]]:
    """A unit's keys, the folder its paths are below, and its own folder's event (none
    for shards by first digit: their folder and its files are walked above)."""
    objs = list(bucket.objects(prefix + unit))
    own, _, name = unit.rpartition("/")
    if not name:
        return objs, own, {own}
    return [o for o in objs if "/" in name + o.rel], own, set()


def _unit_events(
    bucket: Bucket, prefix: str, unit: str, mtimes: bool, times: Overlay | None
) -> tuple[list[Event], Side]:
    """Every event of one unit (listed whole), part by part, each part's paths sorted
    (a folder before what it holds), closed by its end event."""
    side = Side()
    objs, own, dirs = _listed_unit(bucket, prefix, unit)
    files: list[tuple[str, Obj]] = []
    tag_index: dict[str, dict[str, str]] = {}
    for o in objs:
        rel = unit + o.rel
        bad = _bad_name(rel)
        if bad is not None:
            at, why = bad
            side.blind.append(at)
            side.problems.append(
                Problem(
                    path=printable(at),
                    code=ProblemCode.UNNAMEABLE,
                    message=f"name {why}: not walked; kept with all it might hold",
                )
            )
            files.append((at, o))
            _parents(at, own, dirs)
            continue
        if rel.endswith("/"):  # a folder marker some tools write: a folder, no file
            _parents(rel[:-1] + "/x", own, dirs)
            continue
        _parents(rel, own, dirs)
        files.append((rel, o))
        head, sep, _ = rel.partition("/index/")
        if sep and "/_manifests/tags/" in head and rel.endswith("/link"):
            p = rel.split("/")
            tag_index.setdefault(head, {})[_md5(f"{p[-3]}:{p[-2]}")] = f"{p[-3]}:{p[-2]}"
    for rel, _ in files:
        _refuse_file_and_folder(rel, dirs, bucket, prefix)
    events: list[Event] = [(d, tokens.DIRECTORY, part_of(d)) for d in dirs]
    seen_bad: set[str] = set()
    for rel, o in files:
        if rel in side.blind:
            if rel not in seen_bad:
                seen_bad.add(rel)
                events.append((rel, tokens.UNNAMEABLE, part_of(rel)))
            continue
        candidates = None
        if rel.endswith("/current/link"):
            candidates = tag_index.get(rel[: -len("/current/link")])
        token = _file_token(rel, o, side, candidates, bucket, prefix, mtimes=mtimes, times=times)
        events.append((rel, token, part_of(rel)))
    side.count = len(objs)
    by_part: dict[str, list[Event]] = {}
    for ev in events:
        by_part.setdefault(ev[2], []).append(ev)
    out: list[Event] = []
    for part in sorted(by_part):
        out += sorted(by_part[part])
        out.append((part, tokens.PART_END, part))
    return out, side


def _refuse_file_and_folder(rel: str, folders: set[str], bucket: Bucket, prefix: str) -> None:
    """A key that is also a folder of the tree (``.../repositories/team`` beside
    ``.../repositories/team/...``): no registry writes one, a filesystem cannot hold
    it, and what the registry makes of it is not known: fail closed, in one line."""
    if rel in folders:
        raise StorageError(
            f"{bucket.url(prefix + printable(rel))} is an object and a folder at once: "
            "not a tree the registry writes; remove or rename that object, then plan again"
        )


def _parents(rel: str, own: str, dirs: set[str]) -> None:
    """Add the folders between the unit's own folder and ``rel``."""
    d = rel.rpartition("/")[0]
    while d and d not in dirs and len(d) > len(own):
        dirs.add(d)
        d = d.rpartition("/")[0]


def _bad_name(rel: str) -> tuple[str, str] | None:
    """(the path up to the first component a plan cannot hold, why), or None."""
    parts = rel.rstrip("/").split("/")
    for i, p in enumerate(parts):
        why = "is empty (a '//' in the key)" if p == "" else name_problem(p)
        if p in (".", ".."):
            why = f"is {p!r}"
        if why is not None:
            return "/".join(parts[: i + 1]), why
    return None


def walk(
    bucket: Bucket,
    storage: ObjectStorage,
    side: Side,
    *,
    progress: Progress | None = None,
    mtimes: bool = False,
    required: bool = False,
    times: Overlay | None = None,
) -> Iterator[Event]:
    """Every path of the tree with its token and part, a unit at a time (``required``:
    an empty tree is an error, not an empty registry; ``times``: restored keys' original
    times)."""
    prefix = storage.v2_prefix
    units, top = _units(bucket, prefix, side)
    if required and not top and not units:
        raise StorageError(
            f"{storage.v2}: no keys there: not registry storage (check the bucket and the "
            "rootdirectory; the registry writes nothing before its first push)"
        )
    yield from top
    seen = 0
    for evs, unit_side in _in_order(
        lambda u: _unit_events(bucket, prefix, u, mtimes, times), units
    ):
        # the unit's notes first: consuming its events reads them (a tag's push time)
        side.problems += unit_side.problems
        side.blind += unit_side.blind
        side.mtimes.update(unit_side.mtimes)
        side.startedat.update(unit_side.startedat)
        yield from evs
        seen += unit_side.count
        side.count = seen
        if progress is not None:
            progress(seen, 0)


def _in_order(work: Callable[[T], R], items: Sequence[T]) -> Iterator[R]:
    """``work`` of each item, JOBS at once, yielded in order, and never more than AHEAD
    answers held (a window of JOBS * 4 units held a million objects' listing whole:
    at that size there are some 66 units)."""
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        todo = iter(items)
        pending = collections.deque(pool.submit(work, i) for i in itertools.islice(todo, AHEAD))
        while pending:
            done = pending.popleft().result()
            pending.extend(pool.submit(work, i) for i in itertools.islice(todo, 1))
            yield done
            del done  # the unit's events are not held while the next one is read


def scan(
    storage: ObjectStorage,
    *,
    bucket: Bucket | None = None,
    progress: Progress | None = None,
    created: bool = False,
    mtimes: bool = False,
    cache: Path | None = None,
) -> Inventory:
    """The inventory of an object-store registry (see fsscan.scan)."""
    bucket = bucket or storage.open()
    side = Side()
    times = Overlay.load(bucket, storage, ages=mtimes)
    reader = ManifestReader(bucket, storage, cache if cache is not None else edges.cache_dir())
    listing = reader.noting(bucket)  # the walk's listing notes the hashes that prove the cache
    evs = walk(listing, storage, side, progress=progress, mtimes=mtimes, required=True, times=times)
    # the share only in the list build empties: its tree's blocks and its blobs are freed
    # as build takes them over, not held by this frame until the scan ends (62 MiB at a
    # million objects, under the manifests' reads)
    return build([share_of(evs, side, mtimes=mtimes)], reader, created, mtimes)


def digest(
    storage: ObjectStorage, *, bucket: Bucket | None = None, progress: Progress | None = None
) -> fingerprint.TreeDigest:
    bucket = bucket or storage.open()
    return digest_events(walk(bucket, storage, Side(), progress=progress))


class ManifestReader:
    """Blob reads for the scan, GETs in parallel. What each manifest references is kept in
    the edges cache (scan/edges.py, in ``cache``), proven by the hashes the walk's listing
    gives (``noting``); its bytes are not kept. An image config (read for --sort-by
    created) is kept on local disk by digest, used while its bytes hash to its name."""

    def __init__(self, bucket: Bucket, storage: ObjectStorage, cache: Path) -> None:
        self.bucket = bucket
        self.prefix = storage.v2_prefix
        self.cache = cache
        self.gets = 0
        self.hits = 0
        self.noted: dict[str, str | None] = {}
        """Blob ``data`` paths of the cached manifests -> the content hash listed."""
        self.edges = edges.Edges(cache, self.listed)

    def listed(self, rel: str) -> str | None:
        return self.noted.get(rel, edges.UNSEEN)

    def noting(self, bucket: Bucket) -> Bucket:
        """``bucket``, whose listings note the content hash of each cached manifest's key."""
        return _Noting(bucket, self)

    def note(self, key: str, o: Obj) -> None:
        rel = key[len(self.prefix) :]
        parts = rel.split("/")  # blobs/<alg>/<ab>/<hex>/data
        if len(parts) == 5 and parts[0] == "blobs" and f"{parts[1]}:{parts[3]}" in self.edges:
            self.noted[rel] = o.md5() or edges.UNSEEN  # no MD5 listed: no proof, read it

    def __call__(self, paths: Sequence[str], limit: int) -> Iterator[bytes | OSError]:
        return self.read(paths, limit)

    def _cached(self, rel: str) -> Path | None:
        parts = rel.split("/")  # blobs/<alg>/<ab>/<hex>/data
        if len(parts) != 5 or parts[1] not in hashlib.algorithms_available:
            return None
        return self.cache / "blobs" / parts[1] / parts[3]

    @staticmethod
    def _matches(rel: str, data: bytes) -> bool:
        parts = rel.split("/")
        return hashlib.new(parts[1], data).hexdigest() == parts[3]

    def _one(self, rel: str, limit: int) -> bytes | OSError:
        cached = self._cached(rel) if limit >= 0 else None  # a manifest: edges.py keeps it
        if cached is not None:
            try:
                data = confine.read_regular(os.fspath(cached))
                if self._matches(rel, data):
                    self.hits += 1
                    return data if limit < 0 else data[:limit]
            except OSError:
                pass
        cap = MANIFEST_LIMIT if limit < 0 else limit
        try:
            self.gets += 1
            data = self.bucket.get(self.prefix + rel, cap + 1)
        except FileNotFoundError:
            return FileNotFoundError(errno.ENOENT, "No such object")
        except Exception as e:  # noqa: BLE001 (one unreadable manifest: kept, reported)
            return OSError(errno.EIO, str(e))
        if len(data) > cap:
            if limit >= 0:
                return data[:limit]
            return OSError(errno.EFBIG, f"larger than {MANIFEST_LIMIT} bytes: not a manifest")
        if cached is not None and self._matches(rel, data):
            self._store(cached, data)
        return data

    def _store(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            Path(tmp).replace(path)
        except OSError as e:  # a cache that cannot be written only costs GETs next time
            log.debug("manifest cache %s: %s", path, e)

    def read(self, paths: Sequence[str], limit: int) -> Iterator[bytes | OSError]:
        one: Callable[[str], bytes | OSError] = lambda rel: self._one(rel, limit)  # noqa: E731
        if len(paths) < 4:
            yield from map(one, paths)
            return
        with ThreadPoolExecutor(max_workers=JOBS) as pool:
            for start in range(0, len(paths), 1024):
                yield from pool.map(one, paths[start : start + 1024])
        log.debug("manifests: %d from cache, %d GETs", self.hits, self.gets)


class _Noting:
    """A bucket whose listings tell the reader each key's content hash (all else delegated)."""

    def __init__(self, inner: Bucket, reader: ManifestReader) -> None:
        self._inner = inner
        self._reader = reader

    def objects(self, prefix: str) -> Iterator[Obj]:
        note = self._reader.note
        for o in self._inner.objects(prefix):
            if o.rel.endswith("/data"):
                note(prefix + o.rel, o)
            yield o

    def __getattr__(self, name: str) -> Any:  # the inner bucket's methods
        return getattr(self._inner, name)
