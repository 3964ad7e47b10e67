"""Benchmark: requests per object moved by an apply and a rollback on object storage.

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_requests [--repos 42] [--tags 20] [--flavour s3]
        [--out bench-results/requests.json]

The demo generator's tree (as bench_buckets builds it) in the memory bucket in each
store's flavour (S3, Azure, GCS), planned with ``--untagged '*' --gc``, applied and rolled
back through ``regplan.workflow`` and ``regplan.apply``, every request counted by kind
(tests/buckets.Counting: a listing is one request whatever its pages; a delete is one
request per 1,000 keys on S3, 256 on Azure, one on GCS). No emulator, and an injected clock: the
counts are the same on every run, so a change of the moves shows as a change of a number
(issue #34: within 5% of before). On moto's server the same apply and rollback (S3,
``--repos 10 --tags 10``) made the same requests, but one more page of a listing of over
1,000 keys: 3,624 and 4,995 there, 3,624 and 4,994 here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import attrs

from regplan.decide.selection import Selection
from regplan.demo.samples import build_scale
from tests.buckets import BATCH, Counting, InMemory


@attrs.frozen
class Run:
    """The requests of one apply and one rollback of the same plan, by kind."""

    flavour: str
    objects: int
    targets: int
    moved: int
    """Objects the apply took out of the registry's tree (the rollback puts them back)."""
    apply: dict[str, int]
    rollback: dict[str, int]

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
        flavour, len(before), targets, moved, apply_counts, dict(sorted(counting.counts.items()))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=42)
    parser.add_argument("--tags", type=int, default=20)
    parser.add_argument("--flavour", choices=sorted(BATCH), action="append")
    parser.add_argument("--out", type=Path, default=Path("bench-results/requests.json"))
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="regplan-bench-requests-"))
    try:
        tree = base / "tree"
        build_scale(tree, repos=args.repos, tags=args.tags, pushes=3)
        runs = [measure(f, tree, base) for f in args.flavour or sorted(BATCH)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        f"{'store':<7}{'objects':>9}{'targets':>9}{'moved':>8}{'apply/obj':>11}{'rollback/obj':>14}"
    )
    for r in runs:
        per = r.per_object()
        print(
            f"{r.flavour:<7}{r.objects:>9,}{r.targets:>9,}{r.moved:>8,}"
            f"{per['apply']:>11.3f}{per['rollback']:>14.3f}"
        )
        print(f"  apply    {r.apply}\n  rollback {r.rollback}")
    report = [{**attrs.asdict(r), "per_object_moved": r.per_object()} for r in runs]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
