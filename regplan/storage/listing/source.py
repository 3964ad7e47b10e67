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
* **Azure Blob Inventory**: the run's ``<rule>-manifest.json`` (its files found beside
  it as for S3, each checked against the manifest's size, the manifest against its
  ``<rule>-manifest.checksum`` when beside it); CSV (a header row) or Parquet with
  ``Name`` (``<container>/<blob>``: only the planned container's rows count),
  ``Content-Length``, ``Last-Modified`` (else ``Creation-Time``), ``Etag`` and,
  to prove links, ``Content-MD5`` (base64). Taken at ``inventoryStartTime``; only a
  ``Succeeded`` run of a ``blob`` rule is read; snapshots, older versions and
  deleted blobs do not count.
* **GCS Storage Insights**: the report's ``<config>_<time>_manifest.json`` (its
  ``report_shards_file_names`` beside it, as many as ``shard_count``; the format
  gives no checksum of a shard); CSV (header row) or Parquet with ``name``,
  ``size``, ``updated``, ``generation`` (GCS's version, what regplan's conditional
  moves name) and, to prove links, ``md5Hash`` (base64; ``crc32c`` else). Taken at
  ``snapshot_time``.

An ETag of 32 hex digits is an S3 single-part ETag: the MD5 of the bytes, which
proves a link's content as the scan's listing does (storage.objects.objscan).
"""

from __future__ import annotations

import base64
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


def _parse_time(text: str, path: Path, what: str = "listed_at") -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise StorageError(f"{path}: its {what} {text[:40]!r} is not a time") from None


def read(path: Path, db: duckdb.DuckDBPyConnection, *, container: str | None = None) -> Source:
    """The listing at ``path``; a one-line StorageError when it is none. ``container``
    is the bucket planned (an Azure inventory lists every container of an account)."""
    if not path.is_file():
        raise StorageError(f"{path}: no such listing file")
    try:
        if path.name.endswith("manifest.json"):
            return _manifest(path, db, container)
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


def manifest_json(path: Path) -> dict[str, Any]:
    """A report's manifest, a JSON object; a one-line StorageError otherwise."""
    try:
        found = json.loads(path.read_bytes())
    except ValueError as e:
        raise StorageError(f"{path}: not a JSON manifest ({e!r:.80})") from None
    if not isinstance(found, dict):
        raise StorageError(f"{path}: not a JSON manifest (not an object)")
    return found


def _manifest(path: Path, db: duckdb.DuckDBPyConnection, container: str | None) -> Source:
    """An inventory report from its manifest: S3's, Azure's or GCS's, by its fields."""
    manifest = manifest_json(path)
    if "destinationContainer" in manifest or "inventoryStartTime" in manifest:
        return _azure(path, manifest, db, container)
    if "report_shards_file_names" in manifest or "snapshot_time" in manifest:
        return _gcs(path, manifest, db)
    return _inventory(path, manifest, db)


def _inventory(path: Path, manifest: dict[str, Any], db: duckdb.DuckDBPyConnection) -> Source:
    """An S3 Inventory report, from its manifest.json."""
    try:
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
    """An S3 report's data file, checked by its MD5."""
    found = _beside(manifest, str(entry["key"]))
    _check_md5(found, entry)
    return found


def _beside(manifest: Path, key: str) -> Path:
    """A report's data file on local disk: its key below some folder above the
    manifest (how a sync of the destination lays it out)."""
    tail = key.split("/")
    for i in range(len(tail)):  # the longest tail of the key that is there
        rel = "/".join(tail[i:])
        for base in (manifest.parent, *manifest.parents):
            candidate = base / rel
            if rel and candidate.is_file():
                return candidate
    raise StorageError(f"{manifest}: its data file {key} is not beside it (sync the report whole)")


def _check_md5(path: Path, entry: dict[str, Any]) -> None:
    want = str(entry.get("MD5checksum", "")).lower()
    if want and _md5(path) != want:
        raise StorageError(f"{path}: its MD5 is not the manifest's: a damaged or other file")


# Azure Blob Inventory: the run's files and manifest as documented at
# https://learn.microsoft.com/azure/storage/blobs/blob-inventory ("Inventory files":
# <rule>-manifest.json with destinationContainer, endpoint, files[].blob/.size,
# inventoryStartTime, inventoryCompletionTime, ruleDefinition.format/objectType/
# schemaFields, ruleName, status, summary; <rule>-manifest.checksum, the MD5 of the
# manifest; CSV with a schema row first, Parquet dates as timestamp_millis; rare
# duplicate rows) and the schema fields of BlobInventoryPolicyDefinition.schemaFields
# (@azure/arm-storage: Name, Last-Modified, Content-Length, Content-MD5, Etag,
# IsCurrentVersion, Snapshot, Deleted, hdi_isfolder...).
_AZURE_NEEDS = ("name", "content-length", "last-modified", "etag")


def _azure(
    path: Path, manifest: dict[str, Any], db: duckdb.DuckDBPyConnection, container: str | None
) -> Source:
    """An Azure Blob Inventory run, from its ``<rule>-manifest.json``: the rows of
    ``container`` (Name is ``<container>/<blob>``), by blob name."""
    try:
        rule = manifest["ruleDefinition"]
        fmt = str(rule["format"]).lower()
        kind = str(rule.get("objectType", "blob")).lower()
        entries = [(str(f["blob"]), int(f["size"])) for f in manifest["files"]]
        status = str(manifest["status"])
        started = str(manifest["inventoryStartTime"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StorageError(f"{path}: not an Azure Blob Inventory manifest ({e!r:.80})") from None
    if status != "Succeeded":
        raise StorageError(f"{path}: the inventory run is {status[:20]!r}, not Succeeded")
    if kind != "blob" or fmt not in ("csv", "parquet"):
        raise StorageError(f"{path}: an inventory of {kind[:20]!r} in {fmt[:20]!r} is not read")
    if not entries:
        raise StorageError(f"{path}: the report lists no data files")
    if not container:
        raise StorageError(f"{path}: an Azure inventory lists an account: name the container")
    _check_checksum(path)
    found = []
    for blob, size in entries:
        data = _beside(path, blob)
        if data.stat().st_size != size:
            raise StorageError(f"{data}: its size is not the manifest's: a damaged or other file")
        found.append(data)
    files = ", ".join(map(_quote, found))
    if fmt == "csv":
        scan = f"read_csv([{files}], header=true, all_varchar=true)"
    else:
        scan = f"read_parquet([{files}])"
    cols = _columns(db, scan)
    if not set(_AZURE_NEEDS) <= set(cols):
        raise StorageError(
            f"{path}: its schemaFields must name Name, Content-Length, Last-Modified and Etag"
        )
    lit = "'" + container.replace("'", "''") + "/'"
    rows = (
        f'(SELECT DISTINCT substr(CAST("Name" AS VARCHAR), {len(container) + 2}) AS key, '  # noqa: S608 (quoted paths, fixed names)
        f'CAST("Content-Length" AS BIGINT) AS size, '
        f"{_azure_time(chr(34) + 'Last-Modified' + chr(34), cols['last-modified'])} AS mtime, "
        f'trim(CAST("Etag" AS VARCHAR), \'"\') AS etag, {_azure_md5(cols)} AS content '
        f'FROM {scan} WHERE starts_with(CAST("Name" AS VARCHAR), {lit}){_azure_current(cols)})'
    )
    return Source(
        file=str(path),
        sha256=_sha256(path),
        format="azure-inventory",
        listed_at=_parse_time(started, path, "inventoryStartTime"),
        rows=rows,
    )


def _check_checksum(manifest: Path) -> None:
    """The manifest against its ``<rule>-manifest.checksum`` (its MD5), when beside it."""
    checksum = manifest.with_name(manifest.name.removesuffix(".json") + ".checksum")
    if not checksum.is_file():
        return
    want = checksum.read_text(errors="replace").strip().strip('"')
    digest = hashlib.md5(manifest.read_bytes(), usedforsecurity=False).digest()
    if want.lower() != digest.hex() and want != base64.b64encode(digest).decode():
        raise StorageError(f"{manifest}: its MD5 is not its checksum file's: a damaged manifest")


def _azure_time(column: str, kind: str) -> str:
    """Epoch seconds of an Azure time: Parquet's timestamp_millis, CSV's text."""
    k = kind.upper()
    if k in ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT"):
        return f"CAST({column} AS DOUBLE) / 1000.0"
    if k.startswith("TIMESTAMP"):
        return f"epoch_ms(CAST({column} AS TIMESTAMPTZ)) / 1000.0"
    text = f"CAST({column} AS VARCHAR)"
    return (
        f"CASE WHEN {text} LIKE '%GMT' "
        f"THEN epoch_ms(strptime({text}, '%a, %d %b %Y %H:%M:%S GMT')) / 1000.0 "
        f"ELSE epoch_ms(CAST(regexp_replace({text}, '(\\.[0-9]{{6}})[0-9]+', '\\1') "
        "AS TIMESTAMPTZ)) / 1000.0 END"
    )


def _azure_md5(cols: dict[str, str]) -> str:
    """A row's content hash: Content-MD5 in hex (base64 in the report), else none."""
    kind = cols.get("content-md5")
    if kind is None:
        return "NULL"
    if kind.upper() == "BLOB":
        return "lower(hex(NULLIF(\"Content-MD5\", ''::BLOB)))"
    return "lower(hex(from_base64(NULLIF(CAST(\"Content-MD5\" AS VARCHAR), ''))))"


def _azure_current(cols: dict[str, str]) -> str:
    """The blobs themselves: no snapshot, older version, deleted blob or folder."""
    where = []
    for name, keep in (
        ("IsCurrentVersion", "true"),
        ("Snapshot", ""),
        ("Deleted", "false"),
        ("hdi_isfolder", "false"),
    ):
        if name.lower() in cols:
            text = f"lower(COALESCE(CAST(\"{name}\" AS VARCHAR), ''))"
            where.append(f"{text} IN ('{keep}', '')")
    return "".join(f" AND {w}" for w in where)


# GCS Storage Insights: the manifest as described at
# https://cloud.google.com/storage/docs/insights/inventory-reports (report_config,
# records_processed, snapshot_time: "all the data in an inventory report is captured
# at the snapshot", shard_count, report_shards_file_names, beside the shards as
# <config>_<time>_<n>.csv|parquet) and the metadata fields of
# `gcloud storage insights inventory-reports create --metadata-fields` (name, size,
# updated, generation, md5Hash, crc32c, etag, bucket...). The manifest names no
# checksum of a shard: a shard missing or too many is what is caught.
_GCS_NEEDS = ("name", "size", "updated", "generation")


def _gcs(path: Path, manifest: dict[str, Any], db: duckdb.DuckDBPyConnection) -> Source:
    """A GCS Storage Insights inventory report, from its ``_manifest.json``."""
    try:
        names = [str(n) for n in _listed(manifest, "report_shards_file_names")]
        count = int(manifest["shard_count"])
        taken = str(manifest["snapshot_time"])
        config = manifest.get("report_config", {})
        options = _get(config, "object_metadata_report_options", "objectMetadataReportOptions")
        bucket = _get(_get(options, "storage_filters", "storageFilters"), "bucket")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise StorageError(f"{path}: not a GCS inventory manifest ({e!r:.80})") from None
    if count != len(names) or not names:
        raise StorageError(f"{path}: its shard_count {count} is not the {len(names)} shards named")
    found = [_beside(path, n) for n in names]
    kinds = {f.name.lower().rpartition(".")[2] for f in found}
    files = ", ".join(map(_quote, found))
    if kinds == {"parquet"}:
        scan = f"read_parquet([{files}])"
    elif kinds == {"csv"}:
        csv = _get(config, "csv_options", "csvOptions") or {}
        header = _get(csv, "header_required", "headerRequired") is not False
        delim = str(_get(csv, "delimiter") or ",")
        if not header or len(delim) != 1 or delim == "'":
            raise StorageError(
                f"{path}: read a CSV report with a header row and a 1-char delimiter"
            )
        scan = f"read_csv([{files}], header=true, all_varchar=true, delim='{delim}')"
    else:
        raise StorageError(f"{path}: its shards are not all CSV or all Parquet")
    cols = _columns(db, scan)
    if not set(_GCS_NEEDS) <= set(cols):
        raise StorageError(f"{path}: its metadata fields must name name, size, updated, generation")
    md5 = "NULLIF(CAST(\"md5Hash\" AS VARCHAR), '')" if "md5hash" in cols else "NULL"
    crc = "NULLIF(CAST(crc32c AS VARCHAR), '')" if "crc32c" in cols else "NULL"
    rows = (
        f"(SELECT DISTINCT CAST(name AS VARCHAR) AS key, CAST(size AS BIGINT) AS size, "  # noqa: S608 (quoted paths, fixed names)
        f"{_mtime('updated', cols['updated'])} AS mtime, CAST(generation AS VARCHAR) AS etag, "
        f"COALESCE(lower(hex(from_base64({md5}))), 'crc32c:' || {crc}) AS content FROM {scan})"
    )
    return Source(
        file=str(path),
        sha256=_sha256(path),
        format="gcs-inventory",
        listed_at=_parse_time(taken, path, "snapshot_time"),
        rows=rows,
        bucket=str(bucket) if bucket else None,
    )


def _listed(d: dict[str, Any], name: str) -> list[Any]:
    """A field of a JSON object that is a list; TypeError otherwise."""
    found = d[name]
    if not isinstance(found, list):
        raise TypeError(f"{name} is no list")
    return found


def _get(d: object, *names: str) -> Any:
    """A field of a JSON object under any of its spellings (snake_case, camelCase)."""
    if d is None:
        return None
    if not isinstance(d, dict):
        raise TypeError(f"{names[0]} is inside no object")
    return next((d[n] for n in names if n in d), None)
