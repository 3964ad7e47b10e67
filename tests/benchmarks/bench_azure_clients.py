"""Benchmark: the Azure SDK (azure-storage-blob) against obstore on regplan's Azure
workload, on one Azurite.

Run as a script (needs ``pip install obstore`` besides ``.[test]``, and Azurite):

    python -m tests.benchmarks.bench_azure_clients [--keys 20000] [--rounds 3]

As bench_s3_clients: listing every key, GETting 2,000 small blobs 16 at a time,
copying 2,000 blobs server side 16 at a time, each with both clients, interleaved;
the client's own CPU seconds are what a client costs regplan (the emulator is the
same for both). Then what the listing proves: the scan of a registry tree through
regplan's bucket, once as the SDK lists (with each blob's Content-MD5) and once
with the MD5 taken out, as obstore's listing gives it (ETag only); the requests
of each are counted at the emulator.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from regplan.demo.samples import build_scale
from regplan.storage.azure.container import AzureBucket
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Obj
from tests.azserver import ACCOUNT, KEY, Azurite, binary, upload_tree
from tests.benchmarks.bench_s3_clients import Runs, measure, medians


class Unproven(AzureBucket):
    """regplan's bucket with each listing's Content-MD5 dropped (what obstore lists)."""

    def objects(self, prefix: str) -> Iterator[Obj]:
        return (attrs.evolve(o, content=None) for o in super().objects(prefix))

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        names, files = super().folders(prefix)
        return names, [attrs.evolve(o, content=None) for o in files]


def proofs(server: Azurite, base: Path) -> dict[str, int]:
    """Requests of one scan of a registry tree, with and without the listing's MD5."""
    storage = server.storage(root="reg")
    build_scale(base / "fs", repos=6, tags=10, pushes=3)
    upload_tree(base / "fs", storage)
    out = {}
    for name, bucket in (("sdk listing", AzureBucket(storage)), ("etag only", Unproven(storage))):
        before = server.requests()
        objscan.scan(storage, bucket=bucket, cache=base / f"cache-{name}")
        out[name] = server.requests() - before
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import obstore as obs
        from obstore.store import AzureStore
    except ImportError:
        sys.exit("needs obstore: pip install obstore")
    exe = binary()
    if exe is None:
        sys.exit("needs Azurite: npm install -g azurite")
    base = Path(tempfile.mkdtemp(prefix="regplan-bench-az-clients-"))
    server = Azurite(base, exe)
    server.start()
    try:
        storage = server.storage(root="")
        bucket = AzureBucket(storage)
        keys = [f"k/{i % 256:02x}/{i:08d}/link" for i in range(args.keys)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: bucket.put(k, k.encode()), keys))
        sample = keys[:: max(1, len(keys) // 2000)][:2000]
        store: Any = AzureStore(
            container_name=storage.container,
            account_name=ACCOUNT,
            access_key=KEY,
            endpoint=server.endpoint,
            client_options={"allow_http": True},
        )
        n = [0]

        def sdk_copy() -> None:
            n[0] += 1
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: bucket.copy(k, f"c{n[0]}/{k}", 1), sample))

        def obs_copy() -> None:
            n[0] += 1
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: obs.copy(store, k, f"c{n[0]}/{k}"), sample))

        def sdk_get() -> None:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(bucket.get, sample))

        def obs_get() -> None:
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda k: obs.get(store, k).bytes(), sample))

        work = {
            "list": (
                lambda: sum(1 for _ in bucket.objects("k/")),
                lambda: sum(len(b) for b in obs.list(store, prefix="k/", chunk_size=5000)),
            ),
            "get 2000": (sdk_get, obs_get),
            "copy 2000": (sdk_copy, obs_copy),
        }
        results: Runs = {w: {"azure-storage-blob": [], "obstore": []} for w in work}
        for _ in range(args.rounds):
            for name, (sdk, o) in work.items():
                before = server.requests()
                results[name]["azure-storage-blob"].append(measure(sdk))
                middle = server.requests()
                results[name]["obstore"].append(measure(o))
                print(f"{name}: requests {middle - before} / {server.requests() - middle}")
        report = medians(results)
        report["scan requests"] = proofs(server, base)
        print(json.dumps({"keys": len(keys), "rounds": args.rounds, **report}, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
