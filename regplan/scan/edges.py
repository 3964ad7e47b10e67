"""What manifests reference, kept across runs: a columnar edges table by manifest digest.

A manifest's facts (``manifests.Manifest``: its kind and the digests it references)
follow from its bytes, and its bytes from its digest. So once a manifest has been read
and its bytes hash to its name, its facts are kept in one Parquet file (written through
DuckDB), one row per reference::

    manifest   kind          size  md5   relation  child
    sha256:..  oci-manifest  1234  9f..  config    sha256:..
    sha256:..  oci-manifest  1234  9f..  layer     sha256:..
    sha256:..  oci-index      310  1c..  child     sha256:..
    sha256:..  oci-index      310  1c..  subject   sha256:..

(a manifest that references nothing has one row with neither relation nor child), and
a later scan takes the facts from here instead of reading and parsing the manifest
again: a daily plan of a bucket GETs only the manifests pushed since the last one.

Used only where the cached facts are the facts of the bytes the storage holds at that
digest now (fail closed): the walk's size of the blob equals the cached size, and on an
object store the listing's MD5 of it (S3's single-part ETag, Azure's Content-MD5, GCS's
md5Hash) is the MD5 of the cached bytes; an object the listing gives no MD5 for (a
multipart S3 upload, an Azure blob put block by block, GCS's CRC32C of a composite
object), or none noted for a key, is no proof: the manifest is read and parsed as
before. A filesystem keeps no hash: there the size alone is the proof, which is why a
filesystem plan uses the cache only when asked to (below). A manifest that cannot be
read or understood is never kept. A file that is unreadable, truncated, of another
schema or holding a row this module would not write is ignored whole (``log.debug``)
and written again.
Writes are a temporary file renamed over the old one, under a lock file, merged with
what another plan wrote meanwhile: a crash or two plans at once leave a whole file.

Where it lives is the reader's to say (``of``): an object store's reader keeps it in
its cache folder (``REGPLAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/regplan``, else
``~/.cache/regplan``); a filesystem's reader keeps none unless ``REGPLAN_CACHE_DIR``
names one (a filesystem plan writes nothing under the home by default).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import attrs
import duckdb

from regplan.scan.layout import Digest, parse_digest
from regplan.scan.manifests import Intern, Manifest, ManifestKind

log = logging.getLogger(__name__)

CACHE_ENV = "REGPLAN_CACHE_DIR"
FILE = "edges-v1.parquet"
"""The table's file in the cache folder (a new layout is a new name)."""
LOCK = "edges-v1.lock"
UNSEEN = "?"
"""What ``Edges.listed`` says of a key the walk did not note: never a proof."""
_COLUMNS = "manifest, kind, size, md5, relation, child"
_MD5 = re.compile(r"[0-9a-f]{32}")
_RELATIONS = ("config", "layer", "child", "subject")
"""A tuple, not a set: a foreign file's value may be unhashable (a list)."""
_KINDS = {k.value: k for k in ManifestKind if k is not ManifestKind.UNKNOWN}
_IMAGES = (ManifestKind.SCHEMA2, ManifestKind.OCI_MANIFEST)
_DB: dict[str, str | bool | int | float | list[str]] = {
    "threads": 1,  # one thread: a scan reads the file in its order (_groups)
    "memory_limit": "256MB",
}


def cache_dir() -> Path:
    """The cache folder of an object store's plans."""
    found = os.environ.get(CACHE_ENV)
    if found:
        return Path(found)
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path("~/.cache").expanduser()) / "regplan"


class Foreign(Exception):  # noqa: N818 (not an error: a file this module did not write)
    """A row this module would not have written."""


@attrs.frozen
class _Entry:
    size: int
    md5: str
    kind: ManifestKind
    edges: tuple[tuple[str, str], ...]
    """(relation, child digest), as written."""

    def manifest(self, intern: Intern) -> Manifest:
        by: dict[str, list[Digest]] = {"config": [], "layer": [], "child": [], "subject": []}
        for relation, child in self.edges:
            by[relation].append(intern(child))
        config = by["config"][0] if by["config"] else None
        blobs = set(by["layer"]) | ({config} if config is not None else set())
        return Manifest(
            kind=self.kind,
            blobs=tuple(sorted(blobs)),
            children=tuple(sorted(set(by["child"]))),
            subject=by["subject"][0] if by["subject"] else None,
            config=config,
        )


def _entry_of(data: bytes, parsed: Manifest) -> _Entry:
    rows = [("config", parsed.config)] if parsed.config is not None else []
    rows += [("layer", b) for b in parsed.blobs if b != parsed.config]
    rows += [("child", c) for c in parsed.children]
    rows += [("subject", parsed.subject)] if parsed.subject is not None else []
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return _Entry(len(data), md5, parsed.kind, tuple(sorted((r, str(d)) for r, d in rows)))


def _proven_by_digest(digest: str, data: bytes) -> bool:
    """Whether ``data`` hashes to ``digest`` (only sha256, sha384 and sha512 prove)."""
    alg, _, encoded = digest.partition(":")
    if alg not in ("sha256", "sha384", "sha512"):  # what registries name content by
        return False
    return hashlib.new(alg, data).hexdigest() == encoded


def _checked(rows: Sequence[tuple[object, ...]]) -> tuple[str, _Entry]:
    """The entry of one manifest's rows (``_groups`` hands them, all of one manifest);
    Foreign at the first row this module would not write. The head (manifest, kind,
    size, MD5) is checked once, then each row is that head and an edge."""
    manifest, kind, size, md5 = rows[0][:4]
    if not isinstance(manifest, str) or not isinstance(md5, str) or not _MD5.fullmatch(md5):
        raise Foreign(f"row of {manifest!r}")
    parse_digest(manifest)  # ValueError: foreign
    if not isinstance(size, int) or size < 0 or not isinstance(kind, str) or kind not in _KINDS:
        raise Foreign(f"{manifest}: size {size!r}, kind {kind!r}")
    head = rows[0][:4]
    edges: list[tuple[str, str]] = []
    for row in rows:
        if row[:4] != head:
            raise Foreign(f"{manifest}: rows disagree")
        relation, child = row[4:]
        if relation is None and child is None:
            continue
        if relation not in _RELATIONS or not isinstance(child, str):
            raise Foreign(f"{manifest}: relation {relation!r}")
        parse_digest(child)
        edges.append((str(relation), child))
    entry = _Entry(size, md5, _KINDS[kind], tuple(sorted(edges)))
    _shape(manifest, entry)
    return manifest, entry


def _shape(manifest: str, e: _Entry) -> None:
    """Foreign unless the entry is what ``manifests.parse`` could have said."""
    rels = [r for r, _ in e.edges]
    if rels.count("config") > 1 or rels.count("subject") > 1:
        raise Foreign(f"{manifest}: two configs or subjects")
    allowed = {
        ManifestKind.SCHEMA1: {"layer"},
        ManifestKind.SCHEMA2: {"config", "layer", "subject"},
        ManifestKind.OCI_MANIFEST: {"config", "layer", "subject"},
        ManifestKind.MANIFEST_LIST: {"child", "subject"},
        ManifestKind.OCI_INDEX: {"child", "subject"},
    }[e.kind]
    if not set(rels) <= allowed or (e.kind in _IMAGES and "config" not in rels):
        raise Foreign(f"{manifest}: {e.kind.value} with {sorted(set(rels))}")


BATCH = 4096


def _connect() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:", config=_DB)


def _rows(db: duckdb.DuckDBPyConnection, path: Path) -> Iterator[tuple[object, ...]]:
    """The rows of the file at ``path`` in its order, a batch at a time (one thread: the
    file's order is the order read)."""
    result = db.execute(f"SELECT {_COLUMNS} FROM read_parquet(?)", [str(path)])  # noqa: S608
    return (row for batch in iter(lambda: result.fetchmany(BATCH), []) for row in batch)


def read_all(path: Path) -> dict[str, _Entry]:
    """Every entry of the file at ``path``; empty when there is none or it is not ours."""
    try:
        if not path.is_file():
            return {}
        with _connect() as db:
            return dict(_groups(_rows(db, path)))
    except (duckdb.Error, OSError, ValueError, Foreign) as e:
        log.debug("manifest edges cache %s ignored (written again): %s", path, e)
        return {}


def _keys(path: Path | None) -> set[int] | None:
    """The hashes of the manifests the file holds (a set of small ints, not of digests: the
    walk asks it of every blob): empty when there is no file or no folder regplan may
    look into; None when the file cannot be read as ours (it is not merged, see save)."""
    if path is None:
        return set()
    try:
        if not path.is_file():  # a folder regplan may not look into: no cache, no error
            return set()
        with _connect() as db:
            result = db.execute("SELECT DISTINCT manifest FROM read_parquet(?)", [str(path)])
            keys: set[int] = set()
            while batch := result.fetchmany(BATCH):
                keys.update(hash(m) for (m,) in batch)
            return keys
    except (duckdb.Error, OSError) as e:
        log.debug("manifest edges cache %s ignored (written again): %s", path, e)
        return None


def _groups(rows: Iterator[tuple[object, ...]]) -> Iterator[tuple[str, _Entry]]:
    """Rows in manifest order -> (manifest, entry), checked a manifest at a time. The file
    is written in ascending manifest order; a manifest whose rows are not together, or
    that comes before the one above it, is Foreign (a part of its rows taken for the
    whole would lose references; a merge with the file needs its order)."""
    group: list[tuple[object, ...]] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            yield _checked(group)
            if not isinstance(row[0], str) or row[0] < str(group[0][0]):
                raise Foreign(f"{row[0]!r}: out of order")
            group = []
        group.append(row)
    if group:
        yield _checked(group)


def _lines(manifest: str, e: _Entry) -> str:
    """The file's rows of one manifest, tab-separated (an empty field is NULL)."""
    head = f"{manifest}\t{e.kind.value}\t{e.size}\t{e.md5}"
    return "".join(f"{head}\t{r}\t{c}\n" for r, c in e.edges or (("", ""),))


class _Unmergeable(Exception):  # noqa: N818 (the old file is left out, not an error)
    """The old file cannot be read as ours to its end."""


def _old(db: duckdb.DuckDBPyConnection, path: Path) -> Iterator[tuple[str, _Entry]]:
    """The entries of the file at ``path`` in its (ascending) order, each checked as
    ``proven`` checks it; _Unmergeable at the first sign the file is not ours or cannot
    be read."""
    try:
        yield from _groups(_rows(db, path))
    except (duckdb.Error, OSError, ValueError, Foreign) as e:
        raise _Unmergeable(str(e)) from e


def _learnt(path: Path) -> Iterator[tuple[str, str]]:
    """(manifest, its rows) of the scratch file, in the order ``Edges.learn`` wrote them."""
    with open(path, encoding="utf-8") as f:
        for manifest, rows in itertools.groupby(f, key=lambda line: line.partition("\t")[0]):
            yield manifest, "".join(rows)


def _merge(
    learnt: Iterator[tuple[str, str]], old: Iterator[tuple[str, _Entry]], out: IO[str]
) -> None:
    """Both in ascending manifest order, to ``out`` in that order; a manifest learnt
    replaces the old file's rows of it. One pass, a manifest at a time: no table of
    either side is held (merging in SQL took 220 MiB over a million-object scan)."""
    here = next(old, None)
    for manifest, rows in learnt:
        while here is not None and here[0] < manifest:
            out.write(_lines(*here))
            here = next(old, None)
        if here is not None and here[0] == manifest:
            here = next(old, None)
        out.write(rows)
    while here is not None:
        out.write(_lines(*here))
        here = next(old, None)


def _write(path: Path, new: Path, old: bool) -> None:
    """The rows learnt (``new``, tab-separated) and, if ``old``, those the file at ``path``
    holds of other manifests, in manifest order, to ``path``: a temporary file, synced,
    renamed over it. An old file that turns out not to be ours is left out."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".edges-", suffix=".tmp")
    os.close(fd)
    merged = Path(f"{tmp}.tsv")
    columns = (
        "{'manifest': 'VARCHAR', 'kind': 'VARCHAR', 'size': 'BIGINT', 'md5': 'VARCHAR', "
        "'relation': 'VARCHAR', 'child': 'VARCHAR'}"
    )
    try:
        with _connect() as db:
            try:
                with open(merged, "w", encoding="utf-8") as out:
                    _merge(_learnt(new), _old(db, path) if old else iter(()), out)
            except _Unmergeable as e:
                log.debug("manifest edges cache %s not merged: %s", path, e)
                with open(merged, "w", encoding="utf-8") as out:
                    _merge(_learnt(new), iter(()), out)
            # small buffers (a row is under 300 bytes): read and written at the defaults
            # (a 32 MB read buffer, row groups of 122,880 rows) this copy took 129 MiB
            # over the scan, at 1 MB and 16,384 rows 11
            db.execute(
                f"COPY (SELECT {_COLUMNS} FROM read_csv($m, delim='\t', header=false, "  # noqa: S608
                f"quote='', escape='', nullstr='', buffer_size={1 << 20}, columns={columns})) "
                "TO $out (FORMAT parquet, ROW_GROUP_SIZE 16384)",
                {"m": str(merged), "out": tmp},
            )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        merged.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One writer at a time among the plans on this machine (where there is flock)."""
    try:
        import fcntl  # noqa: PLC0415 (POSIX only)
    except ImportError:  # pragma: no cover (Windows: the rename alone keeps the file whole)
        yield
        return
    with open(folder / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Edges:
    """The cache of one scan: asked once for the proven facts of the manifests it wants,
    told of the manifests read, saved once. ``listed(path)`` is the content hash the
    walk's listing gave for a blob's ``data`` (None: the store keeps none; ``UNSEEN``:
    not noted, no proof). What it holds in memory is a small int per cached manifest;
    the facts are read from the file for the manifests asked about, a manifest at a
    time, and those learnt wait in a scratch file until saved."""

    def __init__(
        self, folder: Path | None, listed: Callable[[str], str | None] | None = None
    ) -> None:
        self.path = None if folder is None else folder / FILE
        self.listed: Callable[[str], str | None] = listed or (lambda _: None)
        keys = _keys(self.path)
        self._keys = keys or set()
        self.bad = keys is None
        """The file is not one of ours: it is not merged into the next one."""
        self._new: IO[str] | None = None
        self._last = ""
        self.learnt = 0
        self.used = 0

    def __contains__(self, digest: str) -> bool:
        """Whether the file may hold ``digest`` (a hash: rarely yes when it does not)."""
        return hash(digest) in self._keys

    def proven(
        self, wanted: Sequence[tuple[Digest, str, int]], intern: Intern
    ) -> dict[Digest, Manifest]:
        """Of ``wanted`` (digest, the path of its blob ``data``, its size by the walk), the
        cached facts the walk proves still theirs (see the module's docstring)."""
        asked = {d: (p, n) for d, p, n in wanted if d in self}
        if self.path is None or not asked:
            return {}
        out: dict[Digest, Manifest] = {}
        try:
            with _connect() as db:
                # the rows asked about are picked here, not by the database: handing it
                # the list of every digest asked (and its hash set) raised a warm
                # million-object plan's peak from 741 to 806 MiB
                rows = (row for row in _rows(db, self.path) if row[0] in asked)
                for digest, e in _groups(rows):
                    path, size = asked[Digest(digest)]
                    listed = self.listed(path)
                    if e.size == size and (listed is None or listed == e.md5):
                        out[Digest(digest)] = e.manifest(intern)
        except (duckdb.Error, OSError, ValueError, Foreign) as e:
            log.debug("manifest edges cache %s ignored (written again): %s", self.path, e)
            self.bad = True
            return {}
        self.used = len(out)
        return out

    def learn(self, digest: Digest, data: bytes, parsed: Manifest) -> None:
        """Keep what ``parsed`` says, if it was understood and ``data`` hashes to ``digest``.
        Manifests are learnt in ascending digest order, as a scan reads them: the save
        merges them into the file in one pass (ValueError otherwise: a caller's bug)."""
        if digest <= self._last:
            raise ValueError(f"{digest} learnt after {self._last}")
        self._last = digest
        if self.path is None or not parsed.known or not _proven_by_digest(digest, data):
            return
        if self._new is None:
            self._new = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed by save)
                "w", encoding="utf-8", prefix="regplan-edges-", suffix=".tsv"
            )
        self._new.write(_lines(digest, _entry_of(data, parsed)))
        self.learnt += 1

    def save(self) -> None:
        """Merge the manifests learnt into the file; a failure only costs reads next time."""
        if self.path is None:
            return
        log.debug("manifest edges: %d from the cache, %d added", self.used, self.learnt)
        if self._new is None:
            return
        try:
            self._new.flush()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path.parent):
                _write(self.path, Path(self._new.name), old=not self.bad)
        except (OSError, duckdb.Error) as e:
            log.debug("manifest edges cache %s not written: %s", self.path, e)
        finally:
            self._new.close()
            self._new = None
            self._last = ""
            self.learnt = 0


@runtime_checkable
class Keeping(Protocol):
    """A reader (build.Reader) that keeps an edges cache of its own."""

    edges: Edges


def of(read: object) -> Edges:
    """The edges cache for a scan through ``read``: its own, or the one ``REGPLAN_CACHE_DIR``
    names explicitly, or none (every manifest is read, as before the cache)."""
    if isinstance(read, Keeping):
        return read.edges
    explicit = os.environ.get(CACHE_ENV)
    return Edges(Path(explicit) if explicit else None)
