"""Benchmark: plan from a listing (``plan --listing``) at a million objects and more.

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_listing --objects 1e6 [--objects 1e7]
        [--format CSV|Parquet] [--memory-limit 512MiB] [--workdir /var/tmp/regplan-listing]
        [--out bench-results/listing.json] [--before /var/tmp/rp-before]

For each size it makes (untimed, kept in --workdir for re-runs) a synthetic registry
as an object store would hold it, without a store: an S3 Inventory report of its keys
(``tests/inventories.py``'s format: manifest.json and CSV or Parquet data files; the
ETags of link files are their MD5s, as S3 gives them) and its manifests as local files
that a read-only bucket over the folder serves (the only GETs a listing plan makes).
The registry: repositories of tags pushed several times (each push a manifest, a
config and a layer of its own, on a base layer shared by the repository), so that
an ``--untagged '*' --gc`` plan removes about two thirds of it (every push but the
last of each tag, and what only it used).

Then, in a child process (peak RSS by wait4), ``regplan.workflow.make_plan`` of
``--untagged '*' --gc --gc-min-age 1h`` through the listing: seconds, peak RSS, targets.
With ``--before DIR`` (a checkout of another version, e.g. ``git archive HEAD | tar -x
-C DIR``), its code plans the same report first, in a child of its own: side by side.
A Parquet report is written by DuckDB from text (``parquet_inventory``), the same files
as ``tests/inventories.py`` writes row by row, in minutes rather than hours at 10M.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from regplan import workflow
from regplan.decide.selection import Selection
from regplan.storage.listing.listed import Listing, listed
from regplan.storage.objects.bucket import Bucket
from regplan.storage.objects.memory import FLAVOURS, MemoryStorage
from tests.inventories import Row, s3_inventory

BUCKET = "bench-bucket"
ROOT = "registry"
V2 = f"{ROOT}/docker/registry/v2"
DAY = 86400.0
PER_PUSH = 22 / 3
"""Objects per push: manifest, config and layer data; revision link; layer links of the
config and the layer; tag index link; and for the last push of a tag its current link
(the base layer and its link are one per repository)."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def shape(objects: int) -> tuple[int, int, int]:
    """(repositories, tags each, pushes of each tag) for about ``objects`` keys."""
    pushes = 3
    tags = 50
    repos = max(1, round(objects / (PER_PUSH * tags * pushes)))  # and 2 keys each
    return repos, tags, pushes


def _manifest(config: str, layers: list[str]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config}",
            "size": 100,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": f"sha256:{d}",
                "size": 1000,
            }
            for d in layers
        ],
    }
    return json.dumps(doc, sort_keys=True).encode()


def _link(rel: str, digest: str, mtime: float) -> Row:
    return (f"{V2}/{rel}", 71, mtime, _md5(f"sha256:{digest}"))


def registry(objects: int, manifests: Path, now: float) -> Iterator[Row]:
    """Every key of the synthetic registry (manifest bytes written under ``manifests``)."""
    repos, tags, pushes = shape(objects)
    old = now - 30 * DAY
    for r in range(repos):
        repo = f"team{r % 50}/svc{r}"
        base = _sha(f"base {r}")
        yield (f"{V2}/blobs/sha256/{base[:2]}/{base}/data", 1000, old, _md5(base))
        yield _link(f"repositories/{repo}/_layers/sha256/{base}/link", base, old)
        for t in range(tags):
            for p in range(pushes):
                when = old + (t * pushes + p) * 60
                yield from _push(repo, r, t, p, base, when, manifests, current=p == pushes - 1)


def _push(
    repo: str, r: int, t: int, p: int, base: str, when: float, manifests: Path, *, current: bool
) -> Iterator[Row]:
    config, layer = _sha(f"config {r} {t} {p}"), _sha(f"layer {r} {t} {p}")
    data = _manifest(config, [base, layer])
    m = hashlib.sha256(data).hexdigest()
    (manifests / m).write_bytes(data)
    for d, size in ((config, 100), (layer, 1000)):
        yield (f"{V2}/blobs/sha256/{d[:2]}/{d}/data", size, when, _md5(d))
        yield _link(f"repositories/{repo}/_layers/sha256/{d}/link", d, when)
    yield (f"{V2}/blobs/sha256/{m[:2]}/{m}/data", len(data), when, _md5(data.decode()))
    yield _link(f"repositories/{repo}/_manifests/revisions/sha256/{m}/link", m, when)
    yield _link(f"repositories/{repo}/_manifests/tags/v{t}/index/sha256/{m}/link", m, when)
    if current:
        yield _link(f"repositories/{repo}/_manifests/tags/v{t}/current/link", m, when)


class FolderBucket:
    """Reads of manifests from a folder of files named by digest (the only GETs a
    listing plan makes when every link is proven by its ETag); anything else is gone."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get(self, key: str, limit: int | None = None) -> bytes:
        parts = key.split("/")
        path = self.folder / parts[-2] if parts[-1] == "data" else None
        if path is None or not path.is_file():
            raise FileNotFoundError(key)
        data = path.read_bytes()
        return data if limit is None else data[:limit]

    def get_to(self, key: str, f: IO[bytes], limit: int | None = None) -> str:
        f.write(self.get(key, limit))
        return ""

    def check(self) -> None:
        pass

    def url(self, key: str) -> str:
        return f"s3://{BUCKET}/{key}"


PER_FILE = 1_000_000
"""Rows per data file of a Parquet report the benchmark writes."""


def parquet_inventory(
    rows: Iterable[Row], folder: Path, *, bucket: str, created: float, fmt: str = "Parquet"
) -> Path:
    """``tests/inventories.py``'s S3 Inventory report in Parquet, the same files and
    manifest, written by DuckDB from a text file per data file (its row-by-row inserts
    take hours at 10M rows)."""
    import duckdb

    data = folder / bucket / "regplan-inv" / "data"
    data.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, object]] = []
    chunks = iter(rows)
    while chunk := list(itertools.islice(chunks, PER_FILE)):
        path = data / f"part-{len(files):05d}.parquet"
        text = data / "rows.tsv"
        with text.open("w") as f:
            f.writelines(f"{k}\t{s}\t{m!r}\t{e}\n" for k, s, m, e in chunk)
        with duckdb.connect() as db:
            db.execute(
                "COPY (SELECT ? AS bucket, key, size, to_timestamp(mtime) AS last_modified_date, "
                "e_tag FROM read_csv(?, delim='\t', quote='', header=false, columns={"
                "'key': 'VARCHAR', 'size': 'BIGINT', 'mtime': 'DOUBLE', 'e_tag': 'VARCHAR'})) "
                "TO ? (FORMAT parquet)",
                [bucket, str(text), str(path)],
            )
        text.unlink()
        raw = path.read_bytes()
        md5 = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        files.append({"key": f"regplan-inv/data/{path.name}", "size": len(raw), "MD5checksum": md5})
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H-%MZ")
    manifest = folder / bucket / "regplan-inv" / stamp / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "sourceBucket": bucket,
        "destinationBucket": "arn:aws:s3:::inventory-dest",
        "version": "2016-11-30",
        "creationTimestamp": str(int(created * 1000)),
        "fileFormat": fmt,
        "fileSchema": "message s3.inventory { required binary bucket (STRING); }",
        "files": files,
    }
    manifest.write_text(json.dumps(doc))
    return manifest


def made_keys(manifest: Path) -> int:
    """How many keys a report lists (its data files' rows)."""
    import duckdb

    with duckdb.connect() as db:
        from regplan.storage.listing import source

        found = source.read(manifest, db)
        return int(db.execute(f"SELECT count(*) FROM {found.rows}").fetchall()[0][0])  # noqa: S608


def _peak(usage: Any) -> int:
    return int(usage.ru_maxrss // 1024)


def prepare(objects: int, fmt: str, workdir: Path) -> tuple[Path, Path, int]:
    repos, tags, pushes = shape(objects)
    base = workdir / f"{repos}x{tags}x{pushes}-{fmt}"
    marker = base / "built.json"
    if not marker.exists():
        manifests = base / "manifests"
        manifests.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        now = time.time()
        rows = registry(objects, manifests, now)  # in no order: the plan sorts
        write = s3_inventory if fmt == "CSV" else parquet_inventory
        made = write(rows, base / "inventory", bucket=BUCKET, created=now, fmt=fmt)
        marker.write_text(
            json.dumps(
                {"manifest": str(made), "keys": made_keys(made), "seconds": time.perf_counter() - t}
            )
        )
    built = json.loads(marker.read_text())
    return Path(built["manifest"]), base / "manifests", int(built["keys"])


def child(manifest: Path, manifests: Path, memory: str | None) -> None:
    """The plan, in this process (``--child``): prints its seconds and targets."""
    bucket = cast(Bucket, FolderBucket(manifests))
    storage = MemoryStorage(
        flavour=FLAVOURS["s3"], container=BUCKET, rootdirectory=ROOT, bucket=bucket
    )
    selection = Selection(untagged=("*",), gc=True, gc_min_age="1h")
    t = time.perf_counter()
    with (
        Listing(manifest, storage, memory=memory) as listing,
        workflow.make_plan(
            storage=listed(storage, listing),
            selection=selection,
            argv=("regplan", "plan"),
            key=Ed25519PrivateKey.generate(),
            signer="bench",
            now=datetime.now(UTC),
            memory=memory,
        ) as draft,
    ):
        targets = draft.header.summary.targets
    print(json.dumps({"seconds": time.perf_counter() - t, "targets": targets}))


def bench(
    objects: int, fmt: str, workdir: Path, memory: str | None, before: Path | None = None
) -> list[dict[str, Any]]:
    """The plan of a synthetic registry of about ``objects`` keys, by ``before``'s code
    (a checkout of another version: its ``regplan`` and this benchmark) and then by
    this one's, one after the other on the same report."""
    manifest, manifests, keys = prepare(objects, fmt, workdir)
    print(f"\n{keys:,} objects ({fmt}): planning --untagged '*' --gc", flush=True)
    here = Path(__file__).resolve().parents[2]
    results = []
    for code, name in ([(before, "before")] if before else []) + [(here, "this")]:
        result = _planned(code, manifest, manifests, memory)
        results.append({**result, "objects": keys, "format": fmt, "code": name})
        print(
            f"  {name:>6}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_mib']} MiB, "
            f"{result['targets']:,} targets",
            flush=True,
        )
    return results


def _planned(code: Path, manifest: Path, manifests: Path, memory: str | None) -> dict[str, Any]:
    """One plan in a child process run from ``code``: its seconds, targets, peak RSS."""
    cmd = [sys.executable, "-m", "tests.benchmarks.bench_listing", "--child", str(manifest)]
    cmd += ["--manifests", str(manifests)] + (["--memory-limit", memory] if memory else [])
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "REGPLAN_CACHE_DIR": cache, "PYTHONPATH": str(code)}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=code)
        assert proc.stdout is not None
        said = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"the plan failed ({proc.returncode})")
    return {**json.loads(said), "peak_rss_mib": _peak(usage)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", action="append", type=float)
    parser.add_argument("--format", choices=["CSV", "Parquet"], default="Parquet")
    parser.add_argument("--memory-limit")
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/regplan-listing"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/listing.json"))
    parser.add_argument(
        "--before", type=Path, help="a checkout of another version, planned first (side by side)"
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--manifests", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.manifests, args.memory_limit)
        return
    results = [
        r
        for n in args.objects or [1e6]
        for r in bench(int(n), args.format, args.workdir, args.memory_limit, args.before)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
