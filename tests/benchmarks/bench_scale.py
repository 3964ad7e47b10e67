"""Benchmark at registry scale: regplan next to distribution's garbage-collect.

Run as a script (not part of the test run; needs docker-registry):

    python -m tests.benchmarks.bench_scale --size 250k [--size 1m] [--rounds 3]
        [--workdir /var/tmp/regplan-bench] [--out bench-results/scale.json] [--plan-only]
        [--baseline DIR]

For each size it builds a tree with regplan.demo.samples.build_scale (kept in --workdir
for re-runs), then, interleaved in each round so that every command sees the
same machine noise:

- regplan plan --untagged '*' --gc        (mark and sweep, signed plan)
- docker-registry garbage-collect --dry-run                     (mark only)
- docker-registry garbage-collect --dry-run --delete-untagged
- regplan verify                           (signature and fingerprint)
- regplan apply and regplan rollback of that plan
- regplan apply and rollback of a plan of some 10,000 targets on the same
  tree (``--untagged 'team0/*'``, planned untimed)
- regplan show (text, markdown, html, json) of the big plan and of a plan of
  one image, and verify, apply and rollback of that one: the peak of each
  reading command over its peak on one image (the flat-memory goal: at most
  60 MiB more, whatever the plan's size)

With ``--plan-only``, each round is the plan and the mark-only
``garbage-collect`` alone (the plan's goals: its peak, and its time against
distribution's), and seconds per path are reported. With ``--baseline DIR`` (another regplan's
source tree, say ``git archive v1.2 | tar -x -C DIR``), each round also runs that
regplan's plan of the same request, in the same round: its time and peak side by side.

Every command runs as its own process; wall time and peak RSS (wait4) are
recorded. The report gives medians and ratios, as a table and as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ijson

from regplan.demo.samples import build_scale

SIZES: dict[str, dict[str, int]] = {
    # about 8 files per image; 500 repositories x 40 tags = 20,000 tags
    "small": {"repos": 50, "tags": 20, "pushes": 3, "repush_every": 4},
    "250k": {"repos": 500, "tags": 40, "pushes": 3, "repush_every": 4},
    "1m": {"repos": 1000, "tags": 60, "pushes": 3, "repush_every": 2},
}
REGPLAN = [sys.executable, "-m", "regplan"]
STOPPED = ["--registry-stopped"]
"""No registry serves the bench tree: apply and rollback are told so (the write guard)."""
SUBSET = "team0/*"
"""--untagged pattern of the smaller plan: one repository in seven (about 12,000
targets at 250k), the size of change the apply goal names (10,000 targets)."""


KEPT_OUTPUT = 1 << 20
"""Bytes of a command's stdout kept (an apply's --json); the rest is read and dropped."""


def run(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    output: Path | None = None,
    cwd: Path | None = None,
) -> tuple[float, int, str]:
    """(seconds, peak RSS in MiB, stdout) of one process; with ``output``, its stdout goes
    to that file instead (and "" is returned): a garbage-collect prints every blob it marks.

    This process must stay small: its peak RSS is carried into the ru_maxrss of
    every child it starts later (see planned_targets), so a `show --format json`
    of a big plan is read piece by piece and not kept."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:  # read only when the command fails
        if output is None:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, env=env, cwd=cwd)
            assert proc.stdout is not None
            kept = b""
            while chunk := proc.stdout.read(1 << 16):
                if len(kept) < KEPT_OUTPUT:
                    kept += chunk
            out = kept.decode(errors="replace")
        else:
            with output.open("wb") as sink:
                proc = subprocess.Popen(cmd, stdout=sink, stderr=errors, env=env)
            out = ""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            errors.seek(0)
            said = errors.read()[-2000:].decode(errors="replace").strip()
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {said}")
    return seconds, usage.ru_maxrss // 1024, out


def plan_report(
    size: str,
    built: dict[str, int],
    targets: int,
    rounds: int,
    med: dict[str, float],
    mem: dict[str, int],
    steps: dict[str, list[tuple[float, int]]],
) -> dict[str, Any]:
    ratio = med["plan"] / med["gc --dry-run"]
    ratios = {"plan / gc mark-only": ratio}
    if "plan (baseline)" in med:
        ratios["baseline plan / gc mark-only"] = med["plan (baseline)"] / med["gc --dry-run"]
        ratios["plan / baseline plan"] = med["plan"] / med["plan (baseline)"]
    per_path_us = med["plan"] / built["paths"] * 1e6
    print(f"  plan: {targets:,} targets")
    for k in steps:
        print(f"  {k:<32}{med[k]:>10.2f} s{mem[k]:>8} MiB")
    for k, v in ratios.items():
        print(f"  {k:<32}{v:>10.2f}")
    print(f"  plan {per_path_us:.1f} us per path")
    return {
        **built,
        "size": size,
        "targets": targets,
        "rounds": rounds,
        "median_seconds": med,
        "peak_rss_mib": mem,
        "ratios": ratios,
        "plan_us_per_path": per_path_us,
        "all": {k: [list(x) for x in v] for k, v in steps.items()},
    }


def prepare(size: str, workdir: Path) -> tuple[Path, Path, dict[str, int]]:
    base = workdir / size
    root = base / "root"
    marker = base / "built.json"
    if not marker.exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        t = time.perf_counter()
        images = build_scale(root, **SIZES[size])
        files = sum(len(f) for _, _, f in os.walk(root))
        paths = sum(len(f) + len(d) for _, d, f in os.walk(root))
        marker.write_text(
            json.dumps(
                {
                    "images": images,
                    "files": files,
                    "paths": paths,
                    "build_seconds": round(time.perf_counter() - t, 1),
                }
            )
        )
    shutil.rmtree(root / "regplan-state", ignore_errors=True)
    config = base / "config.yml"
    config.write_text(
        f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {root}}}\n"
        "  delete: {enabled: true}\nhttp: {addr: 127.0.0.1:0}\n"
    )
    key = base / "bench.key"
    if not key.exists():
        run([*REGPLAN, "keygen", str(key)])
    return root, config, json.loads(marker.read_text())


FORMATS = ("text", "markdown", "html", "json")


def review_size(fmt: str, out: str) -> int:
    """A review's length as its goal counts it: text in lines, the rest in characters
    (of the first KEPT_OUTPUT bytes: an HTML page past it counts as that)."""
    return out.count("\n") if fmt == "text" else len(out)


def planned_targets(plan: Path) -> int:
    """The plan's target count, read without loading the plan: this process must stay
    small. Its peak RSS is carried into every child it starts (subprocess starts them
    with vfork, and exec keeps the high-water mark of the memory it replaces), so
    loading a 188 MB plan here once (774 MiB) made every later command report 774."""
    with plan.open("rb") as f:
        return int(next(ijson.items(f, "summary.targets")))


def first_image(root: Path) -> str:
    """``repo:tag`` of the first tag of the first repository (a plan of one image)."""
    repos = root / "docker" / "registry" / "v2" / "repositories"
    team = sorted(repos.iterdir())[0]
    repo = sorted(team.iterdir())[0]
    tag = sorted((repo / "_manifests" / "tags").iterdir())[0]
    return f"{team.name}/{repo.name}:{tag.name}"


def bench(
    size: str, rounds: int, workdir: Path, *, plan_only: bool = False, baseline: Path | None = None
) -> dict[str, Any]:
    root, config, built = prepare(size, workdir)
    key = config.parent / "bench.key"
    plan = config.parent / "bench.plan.json"
    subset = config.parent / "bench-subset.plan.json"
    subset_targets = 0
    print(
        f"\n{size}: {built['files']:,} files, {built['paths']:,} paths, {built['images']:,} images",
        flush=True,
    )
    tiny = config.parent / "bench-one.plan.json"
    trust = ["--trust", f"{key}.pub"]
    one = first_image(root)
    steps: dict[str, list[tuple[float, int]]] = {}
    review: dict[str, int] = {}
    """How long each review of the big plan is (text lines, Markdown characters ...)."""
    targets = 0
    # untimed: every command starts with the same warm cache (the tree's folders
    # and links, and the manifests, which a walk does not read)
    t = time.perf_counter()
    sum(1 for _ in os.walk(root))
    run(["docker-registry", "garbage-collect", "--dry-run", str(config)])
    print(f"  warm-up walk and mark {time.perf_counter() - t:.1f}s", flush=True)

    def record(name: str, result: tuple[float, int, str]) -> str:
        steps.setdefault(name, []).append(result[:2])
        return result[2]

    for n in range(rounds):
        record(
            "plan",
            run(
                [
                    *REGPLAN,
                    "plan",
                    "--root",
                    str(root),
                    "--key",
                    str(key),
                    "-o",
                    str(plan),
                    "--untagged",
                    "*",
                    "--gc",
                    "-q",
                    "--json",
                ]
            ),
        )
        targets = planned_targets(plan)
        if baseline is not None:  # the same request, by the other regplan (python -m from DIR)
            args = ["plan", "--root", str(root), "--key", str(key), "-o", f"{plan}.base"]
            args += ["--untagged", "*", "--gc", "-q", "--json"]
            record("plan (baseline)", run([*REGPLAN, *args], cwd=baseline))
        record(
            "gc --dry-run", run(["docker-registry", "garbage-collect", "--dry-run", str(config)])
        )
        if plan_only:
            print(
                f"  round {n + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f}s" for k, v in steps.items())
            )
            continue
        record(
            "gc --dry-run --delete-untagged",
            run(
                [
                    "docker-registry",
                    "garbage-collect",
                    "--dry-run",
                    "--delete-untagged",
                    str(config),
                ]
            ),
        )
        record("verify", run([*REGPLAN, "verify", str(plan), "--trust", f"{key}.pub"]))
        out = record(
            "apply",
            run([*REGPLAN, "apply", str(plan), "--trust", f"{key}.pub", "--json", "-q", *STOPPED]),
        )
        record(
            "rollback",
            run([*REGPLAN, "rollback", json.loads(out)["apply_id"], "--root", str(root), *STOPPED]),
        )
        # the goal's size of change: a plan of some 10,000 targets on the same tree
        plan_args = ["--root", str(root), "--key", str(key), "-o", str(subset), "-q", "--json"]
        run([*REGPLAN, "plan", *plan_args, "--untagged", SUBSET])
        subset_targets = planned_targets(subset)
        out = record(
            "apply (subset)",
            run(
                [*REGPLAN, "apply", str(subset), "--trust", f"{key}.pub", "--json", "-q", *STOPPED]
            ),
        )
        record(
            "rollback (subset)",
            run([*REGPLAN, "rollback", json.loads(out)["apply_id"], "--root", str(root), *STOPPED]),
        )
        # what a plan's size costs a reader: each reading command on the big plan and on
        # a plan of one image (its peak is the baseline of the flat-memory goal)
        run([*REGPLAN, "plan", *plan_args[:4], "-o", str(tiny), "-q", "--json", "--image", one])
        for name, p in (("", plan), (" (one image)", tiny)):
            for fmt in FORMATS:
                out = record(f"show {fmt}{name}", run([*REGPLAN, "show", str(p), "--format", fmt]))
                if not name:
                    review[fmt] = review_size(fmt, out)
            if p is tiny:
                record("verify (one image)", run([*REGPLAN, "verify", str(p), *trust]))
                out = record(
                    "apply (one image)",
                    run([*REGPLAN, "apply", str(p), *trust, "--json", "-q", *STOPPED]),
                )
                record(
                    "rollback (one image)",
                    run(
                        [
                            *REGPLAN,
                            "rollback",
                            json.loads(out)["apply_id"],
                            "--root",
                            str(root),
                            *STOPPED,
                        ]
                    ),
                )
        shutil.rmtree(root / "regplan-state")
        print(
            f"  round {n + 1}: " + ", ".join(f"{k} {v[-1][0]:.1f}s" for k, v in steps.items()),
            flush=True,
        )
    med = {k: statistics.median(s for s, _ in v) for k, v in steps.items()}
    mem = {k: max(m for _, m in v) for k, v in steps.items()}
    if plan_only:
        return plan_report(size, built, targets, rounds, med, mem, steps)
    ratios = {
        "plan / gc mark-only": med["plan"] / med["gc --dry-run"],
        "plan / gc --delete-untagged": med["plan"] / med["gc --dry-run --delete-untagged"],
        "verify / plan": med["verify"] / med["plan"],
        "apply / plan": med["apply"] / med["plan"],
        "rollback / plan": med["rollback"] / med["plan"],
        "apply (subset) / plan": med["apply (subset)"] / med["plan"],
        "rollback (subset) / plan": med["rollback (subset)"] / med["plan"],
    }
    over_one = {
        f"{k} - one image, MiB": mem[k] - mem[f"{k} (one image)"]
        for k in ("verify", "apply", "rollback", *(f"show {f}" for f in FORMATS))
    }
    print(f"  plan: {targets:,} targets; subset ({SUBSET}): {subset_targets:,} targets")
    print(f"  {'step':<32}{'median s':>10}{'peak MiB':>10}")
    for k in steps:
        print(f"  {k:<32}{med[k]:>10.2f}{mem[k]:>10}")
    for k, v in ratios.items():
        print(f"  {k:<32}{v:>10.2f}")
    for k, d in over_one.items():
        print(f"  {k:<32}{d:>10}")
    print(
        f"  review of {targets:,} targets: text {review['text']} lines (at most 500), "
        f"Markdown {review['markdown']:,} characters (at most 30,000), "
        f"HTML {review['html']:,} characters"
    )
    return {
        **built,
        "size": size,
        "targets": targets,
        "subset_targets": subset_targets,
        "rounds": rounds,
        "median_seconds": med,
        "peak_rss_mib": mem,
        "ratios": ratios,
        "peak_over_one_image_mib": over_one,
        "review_size": review,
        "all": {k: [list(x) for x in v] for k, v in steps.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", action="append", choices=sorted(SIZES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/regplan-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/scale.json"))
    parser.add_argument(
        "--plan-only", action="store_true", help="each round: plan and gc --dry-run only"
    )
    parser.add_argument(
        "--baseline", type=Path, help="another regplan's source tree: its plan side by side"
    )
    args = parser.parse_args()
    if shutil.which("docker-registry") is None:
        sys.exit("needs docker-registry (apt-get install docker-registry)")
    results = [
        bench(size, args.rounds, args.workdir, plan_only=args.plan_only, baseline=args.baseline)
        for size in args.size or ["250k"]
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
