"""``regplan list``: every key of an object-store registry, listed in parallel (a
unit per blob shard and per top-level repository name, as the scan lists them), into
a Parquet file of ``key, size, last_modified, etag, content`` sorted by key, with the
time the listing began as its ``regplan.listed_at`` (a key written while it ran may
or may not be in it; it is younger than that time either way).
"""

from __future__ import annotations

import csv
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import attrs
import duckdb

from regplan.errors import StorageError
from regplan.progress import Progress
from regplan.storage.objects.bucket import Bucket, Obj, ObjectStorage

JOBS = 16
"""Listings in flight at once (they wait on the network)."""
EXPAND = (
    "docker/",
    "docker/registry/",
    "docker/registry/v2/",
    "docker/registry/v2/blobs/",
    "docker/registry/v2/repositories/",
)
"""Folders (relative to the rootdirectory) split into their subfolders, each listed on
its own: below ``blobs/`` each algorithm's shards, below ``repositories/`` each name."""


@attrs.frozen(kw_only=True)
class Listed:
    path: Path
    keys: int
    listed_at: str


def _units(bucket: Bucket, base: str) -> tuple[list[str], list[Obj]]:
    """(prefixes to list whole, keys found on the way), all relative to ``base``."""
    units: list[str] = []
    loose: list[Obj] = []
    todo = [""]
    while todo:
        rel = todo.pop()
        names, files = bucket.folders(base + rel)
        loose += [attrs.evolve(o, rel=rel + o.rel) for o in files]
        for name in names:
            sub = f"{rel}{name}/"
            split = sub in EXPAND or rel == "docker/registry/v2/blobs/"
            (todo if split else units).append(sub)
    return sorted(units), loose


def _rows(bucket: Bucket, base: str, progress: Progress | None) -> Iterator[Obj]:
    units, loose = _units(bucket, base)
    yield from loose
    seen = len(loose)
    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        for start in range(0, len(units), JOBS * 4):
            window = units[start : start + JOBS * 4]
            for unit, objs in zip(
                window, pool.map(lambda u: list(bucket.objects(base + u)), window), strict=True
            ):
                for o in objs:
                    yield attrs.evolve(o, rel=unit + o.rel)
                seen += len(objs)
                if progress is not None:
                    progress(seen, 0)


def write(storage: ObjectStorage, out: Path, *, progress: Progress | None = None) -> Listed:
    """List ``storage``'s rootdirectory into ``out`` (Parquet); keys are the bucket's."""
    bucket = storage.open()
    root = storage.rootdirectory
    base = f"{root}/" if root else ""
    began = datetime.fromtimestamp(int(time.time()), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    n = 0
    with tempfile.TemporaryDirectory(prefix="regplan-list-") as tmp:
        rows = Path(tmp) / "rows.csv"
        with rows.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["key", "size", "last_modified", "etag", "content"])
            for o in _rows(bucket, base, progress):
                w.writerow([base + o.rel, o.size, repr(o.mtime), o.etag, o.content or ""])
                n += 1
        if n == 0:
            raise StorageError(f"{storage.root}: no keys there: nothing to list")
        _to_parquet(rows, out, began, Path(tmp))
    return Listed(path=out, keys=n, listed_at=began)


def _to_parquet(rows: Path, out: Path, began: str, tmp: Path) -> None:
    db = duckdb.connect(":memory:", config={"temp_directory": str(tmp / "spill"), "threads": 1})
    partial = out.with_name(out.name + ".part")
    try:
        db.execute(
            "COPY (SELECT key, CAST(size AS BIGINT) AS size, "
            "CAST(last_modified AS DOUBLE) AS last_modified, etag, NULLIF(content, '') AS content "
            "FROM read_csv(?, header=true, all_varchar=true) ORDER BY key) "
            "TO ? (FORMAT parquet, KV_METADATA {'regplan.listed_at': ?})",
            [str(rows), str(partial), began],
        )
        partial.replace(out)
    except duckdb.Error as e:
        raise StorageError(f"cannot write {out}: {str(e).splitlines()[0]}") from None
    except OSError as e:
        raise StorageError(f"cannot write {out}: {e.strerror}") from None
    finally:
        db.close()
        partial.unlink(missing_ok=True)
