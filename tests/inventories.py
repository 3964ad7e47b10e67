"""Inventory reports as the clouds write them, from a bucket's keys: what
``plan --listing`` reads in the tests and in tests/benchmarks/bench_listing.py.

An S3 Inventory report is a ``manifest.json`` (sourceBucket, creationTimestamp in
milliseconds, fileFormat, fileSchema, files with their MD5) beside its data files,
laid out as ``aws s3 sync`` of the destination prefix leaves it:
``<bucket>/<config>/data/<uuid>.csv.gz`` and ``<bucket>/<config>/<date>/manifest.json``.
CSV data files have no header and URL-encoded keys; Parquet ones the snake-case
columns.

An Azure Blob Inventory run is ``<container>/YYYY/MM/DD/HH-MM-SS/<rule>/`` holding
``<rule>-manifest.json`` (files by blob path and size), ``<rule>-manifest.checksum``
(the manifest's MD5) and the data files, CSV with a schema row or Parquet, their
``Name`` the container and the blob's name; Content-MD5 in base64. A GCS Storage
Insights report is ``<config>_<time>_manifest.json`` beside its shards
``<config>_<time>_<n>.csv`` (a header row) or ``.parquet``; md5Hash in base64 and
``generation`` GCS's version.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import urllib.parse
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from regplan.storage.objects.memory import MemoryBucket

Row = tuple[str, int, float, str]
"""key, size, last modified (epoch seconds), ETag."""
Blob = tuple[str, int, float, str, str | None]
"""key, size, last modified, version (Azure's ETag, GCS's generation), hex MD5 or None."""


def rows_of(bucket: MemoryBucket) -> list[Row]:
    """Every key of a memory bucket, with S3's ETag (its MD5, single part)."""
    return [(k, len(o.data), o.mtime, o.etag) for k, o in sorted(bucket.snapshot("").items())]


def blobs_of(bucket: MemoryBucket) -> list[Blob]:
    """Every key of a memory bucket, with its version and content hash."""
    snap = sorted(bucket.snapshot("").items())
    return [(k, len(o.data), o.mtime, o.etag, o.content) for k, o in snap]


def _b64(md5: str | None) -> str:
    return base64.b64encode(bytes.fromhex(md5)).decode() if md5 else ""


def _iso(t: float) -> str:
    return (
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(t * 1000) % 1000:03d}Z"
    )


def s3_inventory(
    rows: Iterable[Row],
    folder: Path,
    *,
    bucket: str,
    created: float,
    fmt: str = "CSV",
    per_file: int = 250_000,
) -> Path:
    """Write an S3 Inventory report of ``rows`` under ``folder``; returns its manifest."""
    data = folder / bucket / "regplan-inv" / "data"
    data.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, object]] = []
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= per_file:
            files.append(_data_file(chunk, data, len(files), bucket, fmt))
            chunk = []
    if chunk or not files:
        files.append(_data_file(chunk, data, len(files), bucket, fmt))
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H-%MZ")
    manifest = folder / bucket / "regplan-inv" / stamp / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(
        json.dumps(
            {
                "sourceBucket": bucket,
                "destinationBucket": "arn:aws:s3:::inventory-dest",
                "version": "2016-11-30",
                "creationTimestamp": str(int(created * 1000)),
                "fileFormat": fmt,
                "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag"
                if fmt == "CSV"
                else "message s3.inventory { required binary bucket (STRING); }",
                "files": files,
            }
        )
    )
    return manifest


def _data_file(chunk: list[Row], data: Path, n: int, bucket: str, fmt: str) -> dict[str, object]:
    if fmt == "CSV":
        path = data / f"part-{n:05d}.csv.gz"
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        for key, size, mtime, etag in chunk:
            w.writerow([bucket, urllib.parse.quote(key, safe="/"), size, _iso(mtime), etag])
        path.write_bytes(gzip.compress(text.getvalue().encode()))
    else:
        path = data / f"part-{n:05d}.parquet"
        db = duckdb.connect()
        db.execute(
            "CREATE TABLE t (bucket VARCHAR, key VARCHAR, size BIGINT, "
            "last_modified_date TIMESTAMPTZ, e_tag VARCHAR)"
        )
        db.executemany(
            "INSERT INTO t VALUES (?, ?, ?, to_timestamp(?), ?)",
            [(bucket, k, s, m, e) for k, s, m, e in chunk],
        )
        db.execute("COPY t TO ? (FORMAT parquet)", [str(path)])
        db.close()
    raw = path.read_bytes()
    return {
        "key": f"regplan-inv/data/{path.name}",
        "size": len(raw),
        "MD5checksum": hashlib.md5(raw, usedforsecurity=False).hexdigest(),
    }


AZURE_FIELDS = ["Name", "Creation-Time", "Last-Modified", "Etag", "Content-Length"]
AZURE_FIELDS += ["Content-MD5", "BlobType", "AccessTier", "Snapshot", "IsCurrentVersion"]


def _azure_row(container: str, blob: Blob, snapshot: str = "") -> list[object]:
    key, size, mtime, etag, md5 = blob
    ticks = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "0000000Z"
    current = "false" if snapshot else ""
    head: list[object] = [f"{container}/{key}", ticks, ticks, etag, size, _b64(md5)]
    return [*head, "BlockBlob", "Hot", snapshot, current]


def azure_inventory(
    blobs: Iterable[Blob],
    folder: Path,
    *,
    container: str,
    started: float,
    fmt: str = "csv",
    per_file: int = 250_000,
) -> Path:
    """Write an Azure Blob Inventory run of ``blobs`` (and, as an account-wide rule
    with snapshots would, a snapshot of the first and a blob of another container)
    under ``folder``; returns its manifest."""
    rows = [_azure_row(container, b) for b in blobs]
    if rows:
        rows.append(
            _azure_row(
                container,
                (str(rows[0][0])[len(container) + 1 :], 1, 0, "x", None),
                "2026-01-01T00:00:00.0000000Z",
            )
        )
        rows.append(_azure_row("other", ("docker/registry/v2/x", 1, 0, "y", None)))
    stamp = datetime.fromtimestamp(started, UTC).strftime("%Y/%m/%d/%H-%M-%S")
    run = folder / "inventory-dest" / stamp / "regplan-rule"
    run.mkdir(parents=True, exist_ok=True)
    files = []
    for n in range(0, max(len(rows), 1), per_file):
        path = run / f"regplan-rule_{n + per_file}_{n // per_file}.{fmt}"
        _table(AZURE_FIELDS, rows[n : n + per_file], path, fmt, azure=True)
        files.append({"blob": f"{stamp}/regplan-rule/{path.name}", "size": path.stat().st_size})
    manifest = run / "regplan-rule-manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "destinationContainer": "inventory-dest",
                "endpoint": "https://account.blob.core.windows.net",
                "files": files,
                "inventoryCompletionTime": _iso(started + 600),
                "inventoryStartTime": _iso(started),
                "ruleDefinition": {
                    "filters": {"blobTypes": ["blockBlob"], "includeSnapshots": True},
                    "format": fmt,
                    "objectType": "blob",
                    "schedule": "daily",
                    "schemaFields": AZURE_FIELDS,
                },
                "ruleName": "regplan-rule",
                "status": "Succeeded",
                "summary": {"objectCount": len(rows), "totalObjectSize": 0},
                "version": "1.0",
            },
            indent=2,
        )
    )
    checksum = hashlib.md5(manifest.read_bytes(), usedforsecurity=False).hexdigest()
    manifest.with_name("regplan-rule-manifest.checksum").write_text(checksum)
    return manifest


GCS_FIELDS = ["bucket", "name", "size", "updated", "generation", "md5Hash", "crc32c", "etag"]


def gcs_inventory(
    blobs: Iterable[Blob],
    folder: Path,
    *,
    bucket: str,
    taken: float,
    fmt: str = "csv",
    per_file: int = 250_000,
) -> Path:
    """Write a GCS Storage Insights inventory report of ``blobs`` under ``folder``;
    returns its manifest."""
    rows: list[list[object]] = [
        [bucket, k, s, _iso(m), int(g), _b64(c), "", f"C{g}="] for k, s, m, g, c in blobs
    ]
    prefix = "c0ffee-config_" + datetime.fromtimestamp(taken, UTC).strftime("%Y-%m-%dT%H:%M")
    dest = folder / "reports"
    dest.mkdir(parents=True, exist_ok=True)
    names = []
    for n in range(0, max(len(rows), 1), per_file):
        path = dest / f"{prefix}_{n // per_file}.{fmt}"
        _table(GCS_FIELDS, rows[n : n + per_file], path, fmt, azure=False)
        names.append(path.name)
    manifest = dest / f"{prefix}_manifest.json"
    config = {
        "name": "projects/p/locations/us/reportConfigs/c0ffee-config",
        "objectMetadataReportOptions": {
            "metadataFields": GCS_FIELDS,
            "storageFilters": {"bucket": bucket},
            "storageDestinationOptions": {"bucket": "inventory-dest"},
        },
    }
    if fmt == "csv":
        config["csvOptions"] = {"recordSeparator": "\n", "delimiter": ",", "headerRequired": True}
    else:
        config["parquetOptions"] = {}
    manifest.write_text(
        json.dumps(
            {
                "report_config": config,
                "records_processed": len(rows),
                "snapshot_time": _iso(taken),
                "shard_count": len(names),
                "report_shards_file_names": names,
            }
        )
    )
    return manifest


def _table(
    fields: list[str], rows: list[list[object]], path: Path, fmt: str, *, azure: bool
) -> None:
    """A CSV with a header row, or Parquet of the fields' natural types."""
    if fmt == "csv":
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(fields)
        w.writerows(rows)
        path.write_text(text.getvalue())
        return
    db = duckdb.connect()
    times = {"Creation-Time", "Last-Modified", "updated"}
    ints = {"Content-Length", "size", "generation"}
    types = ", ".join(
        f'"{f}" '
        + (
            "BIGINT"
            if f in ints or (azure and f in times)
            else "TIMESTAMP"
            if f in times
            else "VARCHAR"
        )
        for f in fields
    )
    db.execute(f"CREATE TABLE t ({types})")
    stamp = (
        "strptime(?, '%Y-%m-%dT%H:%M:%S.%fZ')"
        if not azure
        else "epoch_ms(strptime(?[1:26], '%Y-%m-%dT%H:%M:%S.%f'))"  # timestamp_millis
    )
    values = ", ".join(stamp if f in times else "?" for f in fields)
    if rows:
        db.executemany(f"INSERT INTO t VALUES ({values})", rows)  # noqa: S608 (fixed names)
    db.execute("COPY t TO ? (FORMAT parquet)", [str(path)])
    db.close()
