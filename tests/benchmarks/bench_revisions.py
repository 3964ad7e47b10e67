"""Two revisions of regplan side by side: plan, apply and rollback time and peak memory.

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_revisions BEFORE AFTER [--size small|250k]
        [--rounds 3] [--workdir /var/tmp/regplan-bench] [--out bench-results/revisions.json]

BEFORE and AFTER are git revisions of this repository; each is checked out as a
worktree under --workdir and run as ``python -m regplan`` with that worktree first
on PYTHONPATH (the same interpreter and libraries). The tree is built once
(regplan.demo.samples.build_scale, kept in --workdir); in each round the two revisions
run one after the other (the order alternating per round, so both see the same
machine noise): plan --untagged '*' --gc, apply, rollback. Every command is its
own process; wall time and peak RSS (wait4) are recorded. The report gives each
step's medians and the ratio AFTER / BEFORE, and checks that both revisions
planned the same targets and images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from regplan.demo.samples import build_scale
from tests.benchmarks.bench_scale import SIZES, STOPPED, run
from tests.helpers import KEY, pem, write_pub

STEPS = ("plan", "apply", "rollback")


def worktree(repo: Path, rev: str, work: Path) -> Path:
    """A worktree of ``rev`` (named by its commit: HEAD moves, a commit does not)."""
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    where = work / f"code-{commit[:12]}"
    if not where.exists():
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(where), rev],
                       check=True, capture_output=True)  # fmt: skip
    return where


DECISIONS = """
import hashlib, json, sys
raw = json.load(open(sys.argv[1], "rb"))
targets = sorted((t["path"], t["kind"]) for t in raw["targets"])
images = sorted((i["repo"], i["tag"] or "", i["digest"] or "", i["verdict"], i["reason"])
                for i in raw.get("images", ()))
print(hashlib.sha256(json.dumps([targets, images]).encode()).hexdigest())
"""
"""The plan's decisions as one digest, computed in a child: this process stays small,
as its peak RSS would be carried into every later child's (bench_scale.run)."""


def one_round(code: Path, root: Path, work: Path) -> tuple[dict[str, tuple[float, int]], str]:
    """plan, apply, rollback with one revision's code: (step -> (seconds, MiB), plan)."""
    env = {**os.environ, "PYTHONPATH": str(code), "REGPLAN_REGISTRY_STOPPED": "1"}
    regplan = [sys.executable, "-m", "regplan"]
    plan = work / "bench.plan.json"
    out: dict[str, tuple[float, int]] = {}
    s, mib, _ = run([*regplan, "plan", "--root", str(root), "--key", str(work / "k"), "-o",
                     str(plan), "-q", "--untagged", "*", "--gc"], env=env)  # fmt: skip
    out["plan"] = (s, mib)
    s, mib, text = run([*regplan, "apply", str(plan), "--trust", str(work / "k.pub"), "--json",
                        "-q", *STOPPED], env=env)  # fmt: skip
    out["apply"] = (s, mib)
    apply_id = json.loads(text)["apply_id"]
    s, mib, _ = run([*regplan, "rollback", apply_id, "--root", str(root), "-q", *STOPPED],
                    env=env)  # fmt: skip
    out["rollback"] = (s, mib)
    shutil.rmtree(root / "regplan-state")
    _, _, digest = run([sys.executable, "-c", DECISIONS, str(plan)])
    return out, digest.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/regplan-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/revisions.json"))
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[2]
    work = args.workdir / "revisions"
    work.mkdir(parents=True, exist_ok=True)
    codes = {r: worktree(repo, r, work) for r in (args.before, args.after)}
    root = args.workdir / args.size / "root"  # bench_scale's tree, reused
    if not root.exists():
        build_scale(root, **SIZES[args.size])
    (work / "k").write_bytes(pem(KEY))
    (work / "k").chmod(0o600)
    write_pub(KEY, work / "k.pub")
    seen: dict[str, dict[str, list[tuple[float, int]]]] = {r: {s: [] for s in STEPS} for r in codes}
    plans: dict[str, str] = {}
    for n in range(args.rounds):
        order = list(codes) if n % 2 == 0 else list(reversed(codes))
        for rev in order:
            steps, plans[rev] = one_round(codes[rev], root, work)
            for step, value in steps.items():
                seen[rev][step].append(value)
            print(f"round {n + 1} {rev}: " + ", ".join(f"{k} {v[0]:.2f}s {v[1]} MiB"
                                                       for k, v in steps.items()))  # fmt: skip
    same = plans[args.before] == plans[args.after]
    report: dict[str, Any] = {"size": args.size, "rounds": args.rounds, "same_decisions": same,
                              "steps": {}}  # fmt: skip
    print(f"\n{'step':<10}{'before s':>10}{'after s':>10}{'ratio':>8}"
          f"{'before MiB':>12}{'after MiB':>11}{'ratio':>8}")  # fmt: skip
    for step in STEPS:
        b, a = seen[args.before][step], seen[args.after][step]
        tb, ta = statistics.median(x[0] for x in b), statistics.median(x[0] for x in a)
        mb, ma = max(x[1] for x in b), max(x[1] for x in a)
        report["steps"][step] = {"seconds": [tb, ta], "peak_mib": [mb, ma],
                                 "time_ratio": ta / tb, "memory_ratio": ma / mb}  # fmt: skip
        print(f"{step:<10}{tb:>10.2f}{ta:>10.2f}{ta / tb:>8.3f}{mb:>12}{ma:>11}{ma / mb:>8.3f}")
    print(f"same targets and images planned: {same}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
