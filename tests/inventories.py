"""Inventory reports as the clouds write them, from a bucket's keys: what
``plan --listing`` reads in the tests and in tests/benchmarks/bench_listing.py.

An S3 Inventory report is a ``manifest.json`` (sourceBucket, creationTimestamp in
milliseconds, fileFormat, fileSchema, files with their MD5) beside its data files,
laid out as ``aws s3 sync`` of the destination prefix leaves it:
``<bucket>/<config>/data/<uuid>.csv.gz`` and ``<bucket>/<config>/<date>/manifest.json``.
CSV data files have no header and URL-encoded keys; Parquet ones the snake-case
columns.
"""

from __future__ import annotations

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


def rows_of(bucket: MemoryBucket) -> list[Row]:
    """Every key of a memory bucket, with S3's ETag (its MD5, single part)."""
    return [(k, len(o.data), o.mtime, o.etag) for k, o in sorted(bucket.snapshot("").items())]


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
