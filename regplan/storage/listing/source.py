"""What a listing file is: its format, when it was taken, its SHA-256, and the SQL
that reads its rows as ``(key, size, mtime, etag, content)``.

Formats:

* **S3 Inventory**: the report's ``manifest.json`` (its data files found beside it, as
  ``aws s3 sync`` of the destination prefix lays them out, each checked against the
  manifest's MD5); CSV (gzip'd, no header, columns named by ``fileSchema``, keys
  URL-encoded) or Parquet; ORC is refused. Taken at ``creationTimestamp``. Only the
  current version of each key counts (``IsLatest``, no delete markers).
* **regplan list**: Parquet with ``key, size, last_modified, etag, content``, taken at
  its ``regplan.listed_at`` (key-value metadata).
* **Parquet or CSV** (with a header) of the same columns (``content`` optional):
  taken, for all regplan can tell, when its newest object was written.

An ETag of 32 hex digits is an S3 single-part ETag: the MD5 of the bytes, which
proves a link's content as the scan's listing does (storage.objects.objscan).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import duckdb

from regplan.errors import StorageError

MD5 = r"^[0-9a-f]{32}$"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_FIELDS = ("key", "size", "last_modified", "etag")


@attrs.frozen(kw_only=True)
class Source:
    """A listing file, understood."""

    file: str
    """As given (what the plan records)."""
    sha256: str
    format: str
    """``s3-inventory``, ``regplan``, ``parquet`` or ``csv``."""
    listed_at: float
    """When it was taken (epoch seconds)."""
    rows: str
    """SQL (a subquery) of its rows: key, size, mtime (epoch seconds), etag, content."""
    bucket: str | None = None
    """The bucket an inventory report says it lists."""

    @property
    def listed_at_text(self) -> str:
        return datetime.fromtimestamp(self.listed_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _content(etag: str, content: str | None) -> str:
    """The SQL of a row's content hash: its own column, else an S3 single-part ETag."""
    own = f"NULLIF({content}, '')" if content else "NULL"
    return f"COALESCE({own}, CASE WHEN regexp_matches({etag}, '{MD5}') THEN {etag} END)"


def _etag(column: str) -> str:
    return f"lower(trim(CAST({column} AS VARCHAR), '\"'))"


def _mtime(column: str, kind: str) -> str:
    if kind.upper() in ("DOUBLE", "FLOAT", "BIGINT", "INTEGER", "DECIMAL", "HUGEINT"):
        return f"CAST({column} AS DOUBLE)"
    return (
        f"CASE WHEN TRY_CAST({column} AS DOUBLE) IS NOT NULL THEN CAST({column} AS DOUBLE) "
        f"ELSE epoch_ms(CAST({column} AS TIMESTAMPTZ)) / 1000.0 END"
    )


def _columns(db: duckdb.DuckDBPyConnection, scan: str) -> dict[str, str]:
    """A table's column names (lower case) -> types."""
    rows = db.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()  # noqa: S608 (quoted paths, checked names)
    return {str(r[0]).lower(): str(r[1]) for r in rows}


def _plain(path: Path, scan: str, db: duckdb.DuckDBPyConnection, fmt: str) -> Source:
    """A Parquet or CSV file of key, size, last_modified, etag[, content]."""
    cols = _columns(db, scan)
    missing = [c for c in _FIELDS if c not in cols]
    if missing:
        raise StorageError(
            f"{path}: not a listing: no column {missing[0]} (a listing has key, size, "
            "last_modified, etag and optionally content, or is an S3 Inventory manifest.json)"
        )
    rows = (
        f"(SELECT CAST(key AS VARCHAR) AS key, CAST(size AS BIGINT) AS size, "  # noqa: S608 (quoted paths, checked names)
        f"{_mtime('last_modified', cols['last_modified'])} AS mtime, "
        f"{_etag('etag')} AS etag, "
        f"{_content(_etag('etag'), 'CAST(content AS VARCHAR)' if 'content' in cols else None)}"
        f" AS content FROM {scan})"
    )
    listed_at = None
    if fmt == "parquet":
        meta = db.execute(
            f"SELECT CAST(value AS VARCHAR) FROM parquet_kv_metadata({_quote(path)}) "  # noqa: S608 (quoted paths, checked names)
            "WHERE CAST(key AS VARCHAR) = 'regplan.listed_at'"
        ).fetchall()
        if meta:
            listed_at = _parse_time(str(meta[0][0]), path)
            fmt = "regplan"
    if listed_at is None:
        newest = db.execute(f"SELECT max(mtime) FROM {rows}").fetchall()[0][0]  # noqa: S608 (quoted paths, checked names)
        listed_at = float(newest) if newest is not None else 0.0
    return Source(file=str(path), sha256=_sha256(path), format=fmt, listed_at=listed_at, rows=rows)


def _parse_time(text: str, path: Path) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise StorageError(f"{path}: its listed_at {text[:40]!r} is not a time") from None


def read(path: Path, db: duckdb.DuckDBPyConnection) -> Source:
    """The listing at ``path``; a one-line StorageError when it is none."""
    if not path.is_file():
        raise StorageError(f"{path}: no such listing file")
    try:
        if path.name == "manifest.json":
            return _inventory(path, db)
        if path.suffix.lower() == ".parquet":
            return _plain(path, f"read_parquet({_quote(path)})", db, "parquet")
        if path.name.lower().endswith((".csv", ".csv.gz")):
            scan = f"read_csv({_quote(path)}, header=true, all_varchar=true)"
            return _plain(path, scan, db, "csv")
    except duckdb.Error as e:
        raise StorageError(
            f"{path}: cannot read it as a listing: {str(e).splitlines()[0]}"
        ) from None
    raise StorageError(
        f"{path}: a listing is a .parquet or .csv file, or an S3 Inventory manifest.json"
    )


def _inventory(path: Path, db: duckdb.DuckDBPyConnection) -> Source:
    """An S3 Inventory report, from its manifest.json."""
    try:
        manifest: dict[str, Any] = json.loads(path.read_bytes())
        fmt = str(manifest["fileFormat"]).upper()
        files = [str(f["key"]) for f in manifest["files"]]
        created = int(manifest["creationTimestamp"]) / 1000
    except (ValueError, KeyError, TypeError) as e:
        raise StorageError(f"{path}: not an S3 Inventory manifest ({e!r:.80})") from None
    found = [_data_file(path, f) for f in manifest["files"]]
    if fmt == "CSV":
        names = [n.strip() for n in str(manifest.get("fileSchema", "")).split(",")]
        bad = [n for n in names if not _NAME.fullmatch(n)]
        if bad or not {"Key", "Size", "LastModifiedDate", "ETag"} <= set(names):
            raise StorageError(
                f"{path}: its fileSchema must name Key, Size, LastModifiedDate and ETag "
                "(and only plain column names)"
            )
        columns = ", ".join(f"'{n}': 'VARCHAR'" for n in names)
        files_sql = ", ".join(map(_quote, found))
        scan = f"read_csv([{files_sql}], header=false, all_varchar=true, columns={{{columns}}})"
        key = "url_decode(Key)"
        size, when, etag = "Size", "LastModifiedDate", "ETag"
        latest = _current(names, "IsLatest", "IsDeleteMarker", text=True)
    elif fmt == "PARQUET":
        scan = f"read_parquet([{', '.join(map(_quote, found))}])"
        names = list(_columns(db, scan))
        key, size, when, etag = "key", "size", "last_modified_date", "e_tag"
        latest = _current(names, "is_latest", "is_delete_marker", text=False)
    else:
        raise StorageError(f"{path}: S3 Inventory in {fmt} is not read: choose CSV or Parquet")
    if not files:
        raise StorageError(f"{path}: the report lists no data files")
    rows = (
        f"(SELECT CAST({key} AS VARCHAR) AS key, CAST({size} AS BIGINT) AS size, "  # noqa: S608 (quoted paths, checked names)
        f"{_mtime(when, 'VARCHAR')} AS mtime, {_etag(etag)} AS etag, "
        f"{_content(_etag(etag), None)} AS content FROM {scan}{latest})"
    )
    return Source(
        file=str(path),
        sha256=_sha256(path),
        format="s3-inventory",
        listed_at=created,
        rows=rows,
        bucket=str(manifest.get("sourceBucket", "")) or None,
    )


def _current(names: list[str], latest: str, marker: str, *, text: bool) -> str:
    """The WHERE clause keeping each key's current version (a versioned report)."""
    where = []
    lower = {n.lower() for n in names}
    if latest.lower() in lower:
        where.append(f"CAST({latest} AS VARCHAR) = 'true'" if text else f"{latest}")
    if marker.lower() in lower:
        where.append(f"CAST({marker} AS VARCHAR) <> 'true'" if text else f"NOT {marker}")
    return f" WHERE {' AND '.join(where)}" if where else ""


def _data_file(manifest: Path, entry: dict[str, Any]) -> Path:
    """A report's data file on local disk: its key below some folder above the
    manifest (how a sync of the destination lays it out), checked by its MD5."""
    key = str(entry["key"])
    tail = key.split("/")
    for i in range(len(tail)):  # the longest tail of the key that is there
        rel = "/".join(tail[i:])
        for base in (manifest.parent, *manifest.parents):
            candidate = base / rel
            if candidate.is_file():
                _check_md5(candidate, entry)
                return candidate
    raise StorageError(f"{manifest}: its data file {key} is not beside it (sync the report whole)")


def _check_md5(path: Path, entry: dict[str, Any]) -> None:
    want = str(entry.get("MD5checksum", "")).lower()
    if want and _md5(path) != want:
        raise StorageError(f"{path}: its MD5 is not the manifest's: a damaged or other file")
