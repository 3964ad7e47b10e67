"""Benchmark: apply and rollback of a plan of >= 10,000 targets next to planning the same tree;
apply as it decides the plan again on the tree (the default) and as planned (--exact).

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_apply [--rounds 5] [--out bench-results/apply.json]

Each round plans, applies and rolls back on the same tree, interleaved, so the
three numbers share the machine's noise; the report gives medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from regplan import apply, workflow
from regplan.decide.selection import Selection
from regplan.demo.samples import build_scale
from regplan.plans import signing
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import KEY, write_pub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repos", type=int, default=30)
    parser.add_argument("--tags", type=int, default=25)
    parser.add_argument("--out", type=Path, default=Path("bench-results/apply.json"))
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="regplan-bench-"))
    try:
        root = base / "root"
        images = build_scale(root, repos=args.repos, tags=args.tags, pushes=3)
        storage = FsStorage.locate(root)
        trusted = [signing.load_trusted(write_pub(KEY, base / "k.pub"))]
        plan_path = base / "bench.plan.json"
        sel = Selection(untagged=("*",), prune=True)
        times: dict[str, list[float]] = {"plan": [], "apply": [], "rollback": [], "exact": []}
        targets = entries = 0
        for n in range(args.rounds):
            now = datetime.now(UTC).replace(microsecond=0)
            t0 = time.perf_counter()
            with workflow.make_plan(
                storage=storage, selection=sel, argv=["bench"], key=KEY, signer="bench", now=now
            ) as plan:
                t1 = time.perf_counter()
                workflow.write_plan(plan, plan_path)
                header = plan.header
            t2 = time.perf_counter()
            result = apply.apply_plan(
                plan_path=plan_path, trusted=trusted, root=root, required=1, now=now
            )
            t3 = time.perf_counter()
            back = apply.rollback(storage=storage, apply_id=result.apply_id, now=now)
            t4 = time.perf_counter()
            assert result.fingerprint_ok and back.fingerprint_ok
            shutil.rmtree(storage.state)
            t5 = time.perf_counter()
            exact = apply.apply_plan(
                plan_path=plan_path, trusted=trusted, root=root, required=1, now=now, exact=True
            )
            times["exact"].append(time.perf_counter() - t5)
            apply.rollback(storage=storage, apply_id=exact.apply_id, now=now)
            shutil.rmtree(storage.state)
            times["plan"].append(t1 - t0)
            times["apply"].append(t3 - t2)
            times["rollback"].append(t4 - t3)
            targets, entries = header.summary.targets, header.fingerprint.entries
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
        med = {k: statistics.median(v) for k, v in times.items()}
        report = {
            "images": images,
            "paths": entries,
            "targets": targets,
            "rounds": args.rounds,
            "median_seconds": med,
            "ratio_to_plan": {k: med[k] / med["plan"] for k in ("apply", "rollback", "exact")},
            "all_seconds": times,
        }
        print(f"\ntree: {entries:,} paths, {images:,} images; plan: {targets:,} targets")
        print(f"{'step':<10}{'median s':>10}{'x plan':>10}")
        for k in ("plan", "apply", "exact", "rollback"):
            print(f"{k:<10}{med[k]:>10.2f}{med[k] / med['plan']:>10.2f}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {args.out}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
