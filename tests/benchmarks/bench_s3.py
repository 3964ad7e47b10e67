"""Benchmark: regplan on S3 against the registry's own garbage-collect, on one bucket.

Run as a script (not part of the test run; needs moto[server] and docker-registry):

    python -m tests.benchmarks.bench_s3 [--rounds 3] [--repos 42] [--tags 20]

A registry of at least 20,000 objects (the demo generator's tree, written key for
key as the s3 driver writes it) in a bucket of moto's server. Each round runs,
interleaved so they share the machine's noise: ``garbage-collect --dry-run``,
``garbage-collect --dry-run --delete-untagged`` (in the first ``--gc-rounds``
only: on moto they take many minutes), ``regplan plan --untagged '*' --gc``
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from regplan.demo.samples import build_scale
from regplan.storage.s3.bucket import S3Storage
from tests.helpers import KEY, pem, write_pub
from tests.integration.realreg import RealRegistry
from tests.integration.test_real_s3 import driver_line
from tests.s3server import S3Server, clean_env, client


def upload(root: Path, storage: S3Storage) -> int:
    """tests.s3server.upload_tree, 16 PUTs at a time."""
    c = client(storage)
    files = [p for p in (root / "docker").rglob("*") if p.is_file()]

    def put(p: Path) -> None:
        key = storage.key(p.relative_to(root).as_posix())
        c.put_object(Bucket=storage.bucket, Key=key, Body=p.read_bytes())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, files))
    return len(files)


def timed(server: S3Server, cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
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
    parser.add_argument("--out", type=Path, default=Path("bench-results/s3.json"))
    parser.add_argument("--gc-wall", type=float, default=0.0, help="with --gc-rounds 0")
    parser.add_argument("--gc-requests", type=int, default=0, help="with --gc-rounds 0")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="regplan-bench-s3-"))
    server = S3Server(base)
    server.start()
    try:
        storage = server.storage()
        fs = base / "fs"
        build_scale(fs, repos=args.repos, tags=args.tags, pushes=3)
        objects = upload(fs, storage)
        shutil.rmtree(fs)
        driver = driver_line(storage, server.endpoint, "2.8")
        reg = RealRegistry(base / "unused", base, driver=driver)
        key = base / "k"
        key.write_bytes(pem(KEY))
        key.chmod(0o600)
        pub = write_pub(KEY, base / "k.pub")
        cache = base / "cache"
        env = {**clean_env(), "REGPLAN_CACHE_DIR": str(cache)}
        regplan = [sys.executable, "-m", "regplan"]
        plan = base / "p.json"
        plan_cmd = [*regplan, "plan", "--config", str(reg.config), "--key", str(key), "-o",
                    str(plan), "--untagged", "*", "--gc", "-q", "--detailed-exitcode"]  # fmt: skip
        gc = ["docker-registry", "garbage-collect", "--dry-run", str(reg.config)]
        gc_untagged = [*gc[:3], "--delete-untagged", str(reg.config)]
        runs: dict[str, list[tuple[float, int]]] = {
            "gc --dry-run": [], "gc --dry-run --delete-untagged": [], "plan cold": [],
            "plan warm": [],
        }  # fmt: skip
        print(f"bucket: {objects} objects", file=sys.stderr)
        for n in range(args.rounds):
            gcs = [("gc --dry-run", gc), ("gc --dry-run --delete-untagged", gc_untagged)]
            for name, cmd in gcs[: 2 if n < args.gc_rounds else 0]:
                wall, reqs, _ = timed(server, cmd, clean_env())
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
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
