"""A bucket whose listings come from a listing file and whose reads go to the store:
what ``plan --listing`` scans instead of listing the bucket.

The listing's rows under the registry's rootdirectory are loaded once into an
embedded DuckDB table in key order (under the mark's memory limit, spilling to a
temporary folder); each unit the scan lists (a blob shard, a repository) is a range
of it. The scan proves links from the rows' content hashes as it does from a live
listing, and GETs the rest (links it cannot prove, manifests) from the store, which
must still hold them: a key gone since the listing reads as gone.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import duckdb

from regplan import heap
from regplan.errors import StorageError
from regplan.scan.layout import printable
from regplan.storage.listing import source
from regplan.storage.objects.bucket import Bucket, Obj, ObjectStorage

_ROW = "key, size, mtime, etag, content"
SORT_MEMORY = "256MiB"
"""The memory of the listing's sort unless --memory-limit says otherwise (it spills to
its folder past it); the sorted file is read under READ_MEMORY."""
ROW_GROUP = 4096
"""Rows per row group of the sorted file: what one listing of a unit reads at least."""
BATCH = 1024
"""Rows a listing of a unit fetches at a time."""
READ_MEMORY = "128MiB"
"""The memory of the database that reads the sorted file: each listing in flight holds
a row group or two (the scan runs 16)."""


def _connect(folder: str, memory: str, *, ordered: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory database under ``memory``, spilling to ``folder``, that gives back
    what a query freed (its allocator keeps up to 128 MiB otherwise) and caches no file;
    ``ordered``: a scan of a file gives its rows in the file's order, each query in the
    thread that fetches its rows (no worker runs ahead of a slow reader and buffers)."""
    return duckdb.connect(
        ":memory:",
        config={
            "memory_limit": memory,
            "temp_directory": folder,
            "preserve_insertion_order": ordered,
            **({"threads": 1} if ordered else {}),
            "allocator_flush_threshold": "16MiB",
            "enable_external_file_cache": False,
        },
    )


def _upper(prefix: str) -> str:
    """The least key after every key that starts with ``prefix`` (not empty)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Listing:
    """A listing file loaded for one plan. Close it (or use ``with``)."""

    def __init__(self, path: Path, storage: ObjectStorage, *, memory: str | None = None) -> None:
        self._tmp = tempfile.mkdtemp(prefix="regplan-listing-")
        self._db = _connect(self._tmp, memory or SORT_MEMORY)
        self._lock = threading.Lock()
        try:
            record = storage.record()
            mine = record.get("bucket") or record.get("container")
            self.source = source.read(path, self._db, container=mine)
            self._check_bucket(storage)
            root = storage.rootdirectory
            within = "WHERE key >= ? AND key < ?" if root else "WHERE key IS NOT NULL"
            params = [f"{root}/", _upper(f"{root}/")] if root else []
            rows = self.source.rows  # SQL of source.py's own making; paths quoted there
            self._sort(rows, within, params)
            self.count = int(self._db.execute("SELECT count(*) FROM listing").fetchall()[0][0])
            self._check_rows(path)
        except duckdb.Error as e:
            self.close()
            raise StorageError(
                f"{path}: cannot read it as a listing: {str(e).splitlines()[0]}"
            ) from None
        except BaseException:
            self.close()
            raise

    def _sort(self, rows: str, within: str, params: list[str]) -> None:
        """The rows under the rootdirectory, sorted by key, into a Parquet file of small
        row groups in the listing's folder (the sort spills past the memory limit); each
        listing the scan asks for reads only the row groups of its key range. The sort's
        database is closed and its memory given back before the scan: the listings are
        read by a database of their own, which holds a row group at a time."""
        sorted_rows = str(Path(self._tmp) / "sorted.parquet").replace("'", "''")
        self._db.execute(
            f"COPY (SELECT {_ROW} FROM {rows} {within} ORDER BY key) TO "  # noqa: S608
            f"'{sorted_rows}' (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})",
            params,
        )
        self._db.close()
        heap.give_back()
        self._db = _connect(self._tmp, READ_MEMORY, ordered=True)
        self._db.execute(
            f"CREATE VIEW listing AS SELECT * FROM read_parquet('{sorted_rows}')"  # noqa: S608
        )

    def _check_rows(self, path: Path) -> None:
        """Every row a key with a size and a time, each key once: StorageError otherwise."""
        bad = self._db.execute(
            "SELECT key FROM listing WHERE size IS NULL OR size < 0 OR mtime IS NULL "
            "OR isnan(mtime) OR isinf(mtime) LIMIT 1"
        ).fetchall()
        if bad:
            raise StorageError(f"{path}: a row has no size or no time ({printable(bad[0][0])})")

    def _check_bucket(self, storage: ObjectStorage) -> None:
        record = storage.record()
        mine = record.get("bucket") or record.get("container")
        if self.source.bucket is not None and mine is not None and self.source.bucket != mine:
            raise StorageError(
                f"{self.source.file} lists bucket {self.source.bucket!r}, not {mine!r}"
            )

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _query(self, sql: str, *params: str) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                rows: list[tuple[Any, ...]] = self._db.execute(sql, list(params)).fetchall()
            except duckdb.Error as e:
                raise StorageError(f"the listing cannot be read: {e}") from None
        return rows

    def objects(self, prefix: str) -> list[Obj]:
        """Every row under ``prefix``, in key order, relative to it."""
        return list(self.stream(prefix))

    def stream(self, prefix: str) -> Iterator[Obj]:
        """Every row under ``prefix``, in key order, relative to it, read a batch at a
        time by a cursor of its own, in the sorted file's order (no sort of the range:
        the scan's first look at the blobs reads a page of them, not all of them);
        StorageError when a key is listed twice."""
        n = len(prefix)
        where = "WHERE key >= ? AND key < ?" if prefix else ""
        with self._lock:
            cursor = self._db.cursor()
        try:
            last = None
            for k, s, m, e, c in _fetched(
                cursor,
                f"SELECT {_ROW} FROM listing {where}",  # noqa: S608 (constants)
                [prefix, _upper(prefix)] if prefix else [],
                self._lock,
            ):
                rel = k[n:]
                if last is not None and rel <= last:
                    raise StorageError(
                        _twice(rel) if rel == last else "the sorted listing is out of order"
                    )
                last = rel
                yield _obj(rel, s, m, e, c)
        finally:
            cursor.close()

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        """A delimiter listing of ``prefix`` from the rows."""
        names: list[str] = []
        files: list[Obj] = []
        for o in self._folder_rows(prefix):
            if isinstance(o, str):
                names.append(o)
            else:
                files.append(o)
        return names, _distinct(files)

    def _folder_rows(self, prefix: str) -> Iterator[str | Obj]:
        n = len(prefix)
        where = "key >= ? AND key < ?" if prefix else "true"
        args = (prefix, _upper(prefix)) if prefix else ()
        rest = f"substr(key, {n + 1})"
        for (name,) in self._query(
            f"SELECT DISTINCT split_part({rest}, '/', 1) FROM listing "  # noqa: S608 (constants)
            f"WHERE {where} AND strpos({rest}, '/') > 0 ORDER BY 1",
            *args,
        ):
            yield str(name)
        for k, s, m, e, c in self._query(
            f"SELECT {_ROW} FROM listing WHERE {where} AND strpos({rest}, '/') = 0 ORDER BY key",  # noqa: S608 (constants)
            *args,
        ):
            yield _obj(k[n:], s, m, e, c)


def _obj(rel: str, size: Any, mtime: Any, etag: Any, content: Any) -> Obj:
    """One row as an object (on S3 its content hash is its ETag: one string for both)."""
    etag = etag or ""
    same = content is not None and content == etag
    return Obj(
        rel=rel, size=int(size), etag=etag, mtime=float(mtime), content=etag if same else content
    )


def _fetched(
    cursor: duckdb.DuckDBPyConnection, sql: str, params: list[str], lock: threading.Lock
) -> Iterator[tuple[Any, ...]]:
    """The rows of a query, a batch at a time, one batch of one listing at a time (the
    scan's threads take turns: each holds its batch, not a share of the file);
    a one-line StorageError."""
    try:
        with lock:
            cursor.execute(sql, params)
        while True:
            with lock:
                batch = cursor.fetchmany(BATCH)
            if not batch:
                return
            yield from batch
    except duckdb.Error as e:
        raise StorageError(f"the listing cannot be read: {e}") from None


def _twice(rel: str) -> str:
    return f"the listing lists {printable(rel)} twice: not one snapshot"


def _distinct(objs: list[Obj]) -> list[Obj]:
    """``objs`` (in key order), refused when a key is listed twice (two versions of it,
    or a listing of two listings: which one is there is not known)."""
    for a, b in itertools.pairwise(objs):
        if a.rel == b.rel:
            raise StorageError(_twice(a.rel))
    return objs


class ListedBucket:
    """The store's bucket, but for its listings, which are the listing file's (no
    request). ``seeks`` is False: no listing request starts at a key."""

    def __init__(self, inner: Bucket, listing: Listing) -> None:
        self._inner = inner
        self._listing = listing
        self.seeks = False

    def objects(self, prefix: str) -> Iterator[Obj]:
        return self._listing.stream(prefix)

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        return self._listing.folders(prefix)

    def page(self, prefix: str, after: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ListedStorage:
    """An ObjectStorage whose ``open`` gives its bucket with the listing's listings."""

    def __init__(self, inner: ObjectStorage, listing: Listing) -> None:
        self._inner = inner
        self.listing = listing

    def open(self) -> Bucket:
        return cast(Bucket, ListedBucket(self._inner.open(), self.listing))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def listed(inner: ObjectStorage, listing: Listing) -> ObjectStorage:
    """``inner``, listed from ``listing`` (reads, records and keys are ``inner``'s)."""
    return cast(ObjectStorage, ListedStorage(inner, listing))
