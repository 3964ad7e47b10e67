"""Benchmark: regplan on object storage against the registry's own garbage-collect.

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_buckets --cloud s3 [--rounds 3] [--repos 42] [--tags 20]
    python -m tests.benchmarks.bench_buckets --cloud azure ...

``--cloud s3``: moto's server and docker-registry 2.8's garbage-collect;
``--cloud azure``: Azurite and registry 3.1's (2.8 cannot reach an emulator).
A registry of at least 20,000 objects (the demo generator's tree, written key for
key as the driver writes it) in a bucket or container. Each round runs,
interleaved so they share the machine's noise: ``garbage-collect --dry-run``,
``garbage-collect --dry-run --delete-untagged`` (in the first ``--gc-rounds``
only: on an emulator they take many minutes), ``regplan plan --untagged '*' --gc``
with an empty manifest cache (cold) and again with the cache (warm). Then
one apply and one rollback of the plan (at least 2,000 targets). Requests are
counted at the server (one log line each); times are wall seconds; the report
gives medians and ratios to ``garbage-collect --dry-run``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from regplan.demo.samples import build_scale
from regplan.storage.azure.place import AzureStorage
from regplan.storage.objects.bucket import ObjectStorage
from regplan.storage.s3.bucket import S3Storage
from tests import azserver
from tests.azserver import Azurite
from tests.helpers import KEY, pem, write_pub
from tests.integration.realreg import RealRegistry, registry_binary
from tests.integration.realreg import azure_driver_line as azure_driver
from tests.integration.realreg import s3_driver_line as s3_driver
from tests.s3server import S3Server, clean_env, client


def uploader(storage: ObjectStorage) -> Callable[[str, bytes], object]:
    """One PUT of a key, on one client of the cloud's own SDK."""
    if isinstance(storage, S3Storage):
        c = client(storage)
        return lambda key, data: c.put_object(Bucket=storage.bucket, Key=key, Body=data)
    assert isinstance(storage, AzureStorage)
    container = azserver.client(storage)
    return lambda key, data: container.upload_blob(key, data, overwrite=True)


def upload(root: Path, storage: ObjectStorage) -> int:
    """The tree key for key (as the tests' upload_tree), 16 PUTs at a time."""
    files = [p for p in (root / "docker").rglob("*") if p.is_file()]
    put = uploader(storage)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(
            pool.map(
                lambda p: put(storage.key(p.relative_to(root).as_posix()), p.read_bytes()), files
            )
        )
    return len(files)


def setup(cloud: str, base: Path) -> tuple[Any, ObjectStorage, str, list[str], dict[str, str]]:
    """(server, storage, the registry's driver line, its garbage-collect command, the
    environment regplan and the registry run in)."""
    if cloud == "s3":
        s3 = S3Server(base)
        s3.start()
        bucket = s3.storage()
        return s3, bucket, s3_driver(bucket, s3.endpoint, "2.8"), ["docker-registry"], clean_env()
    exe = azserver.binary()
    if exe is None:
        sys.exit("needs Azurite: npm install -g azurite")
    az = Azurite(base, exe)
    az.start()
    container = az.storage()
    registry, where = registry_binary("3.1")
    if registry is None:
        sys.exit(f"needs registry 3.1: {where}")
    env = {k: v for k, v in clean_env().items() if not k.startswith("AZURE_")}
    return az, container, azure_driver(container, az.endpoint), [registry], env


def timed(server: Any, cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(wall seconds, requests the server saw, output) of one command."""
    before = server.requests()
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=7200)
    wall = time.perf_counter() - t0
    if r.returncode not in (0, 2):
        raise RuntimeError(f"{cmd[:3]} failed: {r.stderr[-2000:]}")
    time.sleep(0.2)  # the server's log line follows its answer
    return wall, server.requests() - before, r.stdout + r.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cloud", choices=("s3", "azure"), default="s3")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--gc-rounds",
        type=int,
        default=1,
        help="rounds that also run garbage-collect (each takes minutes per 10,000 objects "
        "on moto: --delete-untagged made 100,000 requests on 20,539 objects)",
    )
    parser.add_argument("--repos", type=int, default=42)
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="bench-results/CLOUD.json")
    parser.add_argument("--gc-wall", type=float, default=0.0, help="with --gc-rounds 0")
    parser.add_argument("--gc-requests", type=int, default=0, help="with --gc-rounds 0")
    args = parser.parse_args()

    result: Path = args.out or Path(f"bench-results/{args.cloud}.json")
    base = Path(tempfile.mkdtemp(prefix=f"regplan-bench-{args.cloud}-"))
    server, storage, driver, registry, clean = setup(args.cloud, base)
    try:
        fs = base / "fs"
        build_scale(fs, repos=args.repos, tags=args.tags, pushes=3)
        objects = upload(fs, storage)
        shutil.rmtree(fs)
        version = "2.8" if args.cloud == "s3" else "3.1"
        reg = RealRegistry(
            base / "unused", base, driver=driver, version=version,
            storage="  redirect: {disable: true}\n",
        )  # fmt: skip
        key = base / "k"
        key.write_bytes(pem(KEY))
        key.chmod(0o600)
        pub = write_pub(KEY, base / "k.pub")
        cache = base / "cache"
        env = {**clean, "REGPLAN_CACHE_DIR": str(cache)}
        regplan = [sys.executable, "-m", "regplan"]
        plan = base / "p.json"
        plan_cmd = [*regplan, "plan", "--config", str(reg.config), "--key", str(key), "-o",
                    str(plan), "--untagged", "*", "--gc", "-q", "--detailed-exitcode"]  # fmt: skip
        gc = [*registry, "garbage-collect", "--dry-run", str(reg.config)]
        gc_untagged = [*gc[:-1], "--delete-untagged", str(reg.config)]
        runs: dict[str, list[tuple[float, int]]] = {
            "gc --dry-run": [], "gc --dry-run --delete-untagged": [], "plan cold": [],
            "plan warm": [],
        }  # fmt: skip
        print(f"{args.cloud}: {objects} objects", file=sys.stderr)
        for n in range(args.rounds):
            gcs = [("gc --dry-run", gc), ("gc --dry-run --delete-untagged", gc_untagged)]
            for name, cmd in gcs[: 2 if n < args.gc_rounds else 0]:
                wall, reqs, _ = timed(server, cmd, clean)
                runs[name].append((wall, reqs))
            shutil.rmtree(cache, ignore_errors=True)
            runs["plan cold"].append(timed(server, plan_cmd, env)[:2])
            runs["plan warm"].append(timed(server, plan_cmd, env)[:2])
            print(
                f"round {n + 1}: "
                + ", ".join(f"{k} {v[-1][0]:.1f}s/{v[-1][1]}" for k, v in runs.items() if v),
                file=sys.stderr,
            )
        targets = json.loads(plan.read_text())["summary"]["targets"]
        wall_a, reqs_a, out = timed(
            server,
            [*regplan, "apply", str(plan), "--trust", str(pub), "--config", str(reg.config),
             "--json", "-q"],
            env,
        )  # fmt: skip
        apply_id = json.loads(out[: out.rindex("}") + 1])["apply_id"]
        wall_r, reqs_r, _ = timed(
            server,
            [*regplan, "rollback", apply_id, "--config", str(reg.config), "-q"],
            env,
        )
        if not runs["gc --dry-run"]:  # --gc-rounds 0: the anchor from an earlier run
            runs["gc --dry-run"] = [(args.gc_wall, args.gc_requests)]
        anchor_wall = statistics.median(w for w, _ in runs["gc --dry-run"])
        anchor_reqs = statistics.median(r for _, r in runs["gc --dry-run"])
        report = {
            "cloud": args.cloud,
            "objects": objects,
            "targets": targets,
            "rounds": args.rounds,
            "runs": {
                name: {
                    "wall_s": round(statistics.median(w for w, _ in v), 2),
                    "requests": statistics.median(r for _, r in v),
                    "wall_vs_gc": round(statistics.median(w for w, _ in v) / anchor_wall, 3),
                    "requests_vs_gc": round(statistics.median(r for _, r in v) / anchor_reqs, 4),
                }
                for name, v in runs.items()
                if v
            },
            "apply": {"wall_s": round(wall_a, 2), "requests": reqs_a},
            "rollback": {"wall_s": round(wall_r, 2), "requests": reqs_r},
        }
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
