"""Benchmark: requests per object moved by an apply and a rollback on object storage.

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_requests [--repos 42] [--tags 20] [--flavour s3]
        [--on memory --on moto --on azurite --on gcs-emulator]
        [--out bench-results/requests.json]

The demo generator's tree (as bench_buckets builds it), planned with ``--untagged '*'
--gc``, applied and rolled back through ``regplan.workflow`` and ``regplan.apply``, on the
same tree side by side: in the memory bucket in each store's flavour (``--on memory``,
the default: no server, an injected clock, the same counts on every run), and on each
store's real server (``--on moto``: S3; ``--on azurite``: Azure Blob; ``--on
gcs-emulator``: GCS). Every request is counted by kind as the client sends it
(tests/buckets.Counting: a listing one per page, a delete one per 1,000 keys on S3, 256
on Azure, 100 on GCS); on moto and Azurite the server's own log counts them too (the
``served`` column). Issue #36's target: S3 apply <= 1.05 requests per object moved (N
copies, N/1,000 DeleteObjects, the listings of 1,000 keys a page and the journal), and
rollback <= 2.1.

Measured on this 2-core machine (requests per object moved; ``served``: the requests
the server logged, apply / rollback):

    default size (42 repos x 20 tags: 20,539 objects, 13,104 moved)
    store  on              apply/obj  rollback/obj  served
    s3     memory              1.020         1.022
    s3     moto                1.020         1.022  13,363 / 13,397
    gcs    memory              1.030         1.032
    azure  memory              2.017         2.020

    --repos 10 --tags 10 (2,451 objects, 1,560 moved: the scans and records weigh more)
    s3     memory / moto       1.062         1.052  1,657 / 1,642 (moto)
    gcs    memory              1.072         1.062
    gcs    gcs-emulator        1.413         2.059  (it ignores startOffset: each place listed)
    azure  memory / azurite    2.060         2.051  3,214 / 3,200 (Azurite)

Before issue #36's moves (default size): s3 2.054 / 2.038, gcs 3.052 / 3.036, azure
2.056 / 2.040: a listing per target (and on GCS a request per delete). Azure still lists
each place: List Blobs' ``startFrom`` is not relied on (Azurite ignores it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from regplan import apply, workflow
from regplan.decide.selection import Selection
from regplan.demo.samples import build_scale
from regplan.plans import signing
from regplan.storage.objects.bucket import Bucket, ObjectStorage
from tests.buckets import BATCH, Counting, InMemory
from tests.helpers import KEY, write_keys

SERVERS = {"moto": "s3", "azurite": "azure", "gcs-emulator": "gcs"}


@attrs.frozen
class Run:
    """The requests of one apply and one rollback of the same plan, by kind."""

    flavour: str
    on: str
    objects: int
    targets: int
    moved: int
    """Objects the apply took out of the registry's tree (the rollback puts them back)."""
    apply: dict[str, int]
    rollback: dict[str, int]
    served: tuple[int, int] | None = None
    """The requests the server logged during the apply and the rollback."""

    def per_object(self) -> dict[str, float]:
        return {
            "apply": round(sum(self.apply.values()) / self.moved, 3),
            "rollback": round(sum(self.rollback.values()) / self.moved, 3),
        }


def measure(flavour: str, tree: Path, base: Path) -> Run:
    """Plan, apply and roll back the tree in a memory bucket of ``flavour``."""
    reg = InMemory.of(flavour, base, tree)
    plan = reg.plan(Selection(untagged=("*",), gc=True), base / f"{flavour}.plan.json")
    targets = json.loads(plan.read_text())["summary"]["targets"]
    before = reg.objects()
    counting = Counting(reg.bucket, batch=BATCH[flavour])
    applied = reg.apply(plan, via=counting)
    apply_counts = dict(sorted(counting.counts.items()))
    moved = len(before.keys() - reg.objects().keys())
    counting.counts.clear()
    back = reg.rollback(applied.apply_id, via=counting)
    if not (applied.fingerprint_ok and back.fingerprint_ok) or reg.objects() != before:
        raise SystemExit(f"{flavour}: the rollback did not bring the tree back as it was")
    return Run(
        flavour,
        "memory",
        len(before),
        targets,
        moved,
        apply_counts,
        dict(sorted(counting.counts.items())),
    )


class Through:
    """A real store's place (an ObjectStorage), every request through ``bucket``."""

    def __init__(self, storage: ObjectStorage, bucket: Bucket) -> None:
        self.inner, self.bucket = storage, bucket

    @property
    def rootdirectory(self) -> str:
        return self.inner.rootdirectory

    @property
    def root(self) -> str:
        return self.inner.root

    def url(self, key: str) -> str:
        return self.inner.url(key)

    @property
    def v2(self) -> str:
        return self.inner.v2

    def key(self, rel: str) -> str:
        return self.inner.key(rel)

    @property
    def v2_prefix(self) -> str:
        return self.inner.v2_prefix

    @property
    def state_prefix(self) -> str:
        return self.inner.state_prefix

    def record(self) -> dict[str, str]:
        return self.inner.record()

    def open(self) -> Bucket:
        return self.bucket


def _upload(tree: Path, bucket: Bucket) -> None:
    files = [p for p in sorted((tree / "docker").rglob("*")) if p.is_file()]
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda p: bucket.put(
                    bucket.storage.key(p.relative_to(tree).as_posix()), p.read_bytes()
                ),
                files,
            )
        )


def _listing(bucket: Bucket) -> dict[str, tuple[int, str | None]]:
    return {o.rel: (o.size, o.content) for o in bucket.objects(bucket.storage.v2_prefix)}


def measure_on(
    flavour: str, on: str, storage: ObjectStorage, served: Callable[[], int] | None, tree: Path,
    base: Path,
) -> Run:  # fmt: skip
    """The same plan, apply and rollback on a real server (real time, the real client)."""
    plain = storage.open()
    _upload(tree, plain)
    trusted = signing.trusted_from([write_keys(base)[1]])
    out = base / f"{on}.plan.json"
    now = datetime.now(UTC)
    with workflow.make_plan(
        storage=storage,
        selection=Selection(untagged=("*",), gc=True),
        argv=("regplan", "plan", "--root", storage.root),
        key=KEY,
        signer="bench",
        now=now,
    ) as draft:
        workflow.write_plan(draft, out)
    targets = json.loads(out.read_text())["summary"]["targets"]
    before = _listing(plain)
    counting = Counting(plain, batch=BATCH[flavour])
    through = Through(storage, counting)
    first = served() if served is not None else 0
    applied = apply.apply_plan(
        plan_path=out, trusted=trusted, root=through, required=1, now=datetime.now(UTC)
    )
    middle = served() if served is not None else 0
    apply_counts = dict(sorted(counting.counts.items()))
    moved = len(before.keys() - _listing(plain).keys())
    counting.counts.clear()
    back = apply.rollback(storage=through, apply_id=applied.apply_id, now=datetime.now(UTC))
    last = served() if served is not None else 0
    after = _listing(plain)
    if not back.fingerprint_ok or {k: v[0] for k, v in after.items()} != {
        k: v[0] for k, v in before.items()
    }:
        raise SystemExit(f"{on}: the rollback did not bring the tree back as it was")
    return Run(
        flavour,
        on,
        len(before),
        targets,
        moved,
        apply_counts,
        dict(sorted(counting.counts.items())),
        (middle - first, last - middle) if served is not None else None,
    )


@contextmanager
def server(on: str, work: Path) -> Iterator[tuple[ObjectStorage, Callable[[], int] | None]]:
    """A store's real server on 127.0.0.1, a new container in it, and its request count."""
    found: Any
    if on == "moto":
        from tests.s3server import S3Server

        found = S3Server(work)
    elif on == "azurite":
        from tests.azserver import Azurite, binary

        exe = binary()
        if exe is None:
            raise SystemExit("azurite is not installed")
        found = Azurite(work, exe)
    else:
        from tests.gcsserver import GcsEmulator

        found = GcsEmulator(work)
    found.start()
    try:
        yield found.storage(), getattr(found, "requests", None)
    finally:
        found.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=42)
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--flavour", choices=sorted(BATCH), action="append")
    parser.add_argument("--on", choices=["memory", *SERVERS], action="append")
    parser.add_argument("--out", type=Path, default=Path("bench-results/requests.json"))
    args = parser.parse_args()
    flavours = args.flavour or sorted(BATCH)
    base = Path(tempfile.mkdtemp(prefix="regplan-bench-requests-"))
    runs: list[Run] = []
    try:
        tree = base / "tree"
        build_scale(tree, repos=args.repos, tags=args.tags, pushes=3)
        for on in args.on or ["memory"]:
            if on == "memory":
                runs += [measure(f, tree, base) for f in flavours]
                continue
            if SERVERS[on] not in flavours:
                continue
            with ExitStack() as stack:
                storage, served = stack.enter_context(server(on, base))
                runs.append(measure_on(SERVERS[on], on, storage, served, tree, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _print(runs)
    report = [{**attrs.asdict(r), "per_object_moved": r.per_object()} for r in runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


def _print(runs: list[Run]) -> None:
    print(
        f"{'store':<7}{'on':<14}{'objects':>9}{'targets':>9}{'moved':>8}{'apply/obj':>11}"
        f"{'rollback/obj':>14}{'served apply/rollback':>24}"
    )
    for r in runs:
        per = r.per_object()
        served = f"{r.served[0]:,} / {r.served[1]:,}" if r.served else ""
        print(
            f"{r.flavour:<7}{r.on:<14}{r.objects:>9,}{r.targets:>9,}{r.moved:>8,}"
            f"{per['apply']:>11.3f}{per['rollback']:>14.3f}{served:>24}"
        )
        print(f"  apply    {r.apply}\n  rollback {r.rollback}")


if __name__ == "__main__":
    main()
