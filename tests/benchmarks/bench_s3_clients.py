"""Benchmark: boto3 against obstore on regplan's S3 workload, on one moto server.

Run as a script (needs ``pip install obstore`` besides ``.[test]``):

    python -m tests.benchmarks.bench_s3_clients [--keys 20000] [--rounds 3]

The three things regplan asks of S3, each with both clients, interleaved:
listing every key (pages of 1,000), GETting 2,000 small objects 16 at a time
(manifests), and copying 2,000 objects server side 16 at a time (apply). The
server (moto, Python) is the same for both, so wall time says little; the
client's own CPU seconds (this process's user + system time) are what a
client costs regplan.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from regplan.storage.s3.bucket import S3Bucket
from tests.s3server import ACCESS, SECRET, S3Server, client


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


Runs = dict[str, dict[str, list[tuple[float, float]]]]
"""work -> client -> (wall, CPU) of each round."""


def medians(results: Runs) -> dict[str, Any]:
    """work -> client -> median wall and CPU seconds."""
    return {
        name: {
            lib: {
                "wall_s": round(statistics.median(w for w, _ in runs), 3),
                "cpu_s": round(statistics.median(cpu for _, cpu in runs), 3),
            }
            for lib, runs in libs.items()
        }
        for name, libs in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import obstore as obs
        from obstore.store import S3Store
    except ImportError:
        sys.exit("needs obstore: pip install obstore")

    server = S3Server(Path(tempfile.mkdtemp(prefix="regplan-bench-clients-")))
    server.start()
    try:
        storage = server.storage(root="")
        c = client(storage)
        keys = [f"k/{i % 256:02x}/{i:08d}/link" for i in range(args.keys)]
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda k: c.put_object(Bucket=storage.bucket, Key=k, Body=k.encode()), keys
                )
            )
        sample = keys[:: max(1, len(keys) // 2000)][:2000]
        bucket = S3Bucket(storage)
        store: Any = S3Store(
            storage.bucket,
            endpoint=server.endpoint,
            access_key_id=ACCESS,
            secret_access_key=SECRET,
            region="us-east-1",
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )
        os.environ.pop("AWS_CA_BUNDLE", None)

        def boto_list() -> None:
            assert sum(1 for _ in bucket.objects("k/")) == len(keys)

        def obs_list() -> None:
            assert sum(len(b) for b in obs.list(store, prefix="k/", chunk_size=1000)) == len(keys)

        def boto_get() -> None:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(bucket.get, sample))

        def obs_get() -> None:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: obs.get(store, k).bytes(), sample))

        n = [0]

        def boto_copy() -> None:
            n[0] += 1
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: bucket.copy(k, f"c{n[0]}/{k}", 1), sample))

        def obs_copy() -> None:
            n[0] += 1
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: obs.copy(store, k, f"c{n[0]}/{k}"), sample))

        work = {
            "list": (boto_list, obs_list),
            "get 2000": (boto_get, obs_get),
            "copy 2000": (boto_copy, obs_copy),
        }
        results: Runs = {w: {"boto3": [], "obstore": []} for w in work}
        for _ in range(args.rounds):
            for name, (b, o) in work.items():
                results[name]["boto3"].append(measure(b))
                results[name]["obstore"].append(measure(o))
        report = medians(results)
        print(json.dumps({"keys": len(keys), "rounds": args.rounds, **report}, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
