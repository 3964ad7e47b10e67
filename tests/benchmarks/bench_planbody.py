"""Benchmark: a plan's lists in its JSON next to the same lists in a Parquet body.

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_planbody --targets 1e6 [--targets 1e7] [--rounds 1]
        [--workdir /var/tmp/regplan-bench-body] [--out bench-results/planbody.json]

For each size it writes one synthetic plan twice (``plans.body``): the header of a
real plan of regplan's demo registry (so ``verify`` finds it fresh), N blob targets
made up, the demo's kept entries and images; once with the lists in the JSON, once
with a Parquet body; both signed by a key from ``regplan keygen``. Then, interleaved
in each round so both forms see the same machine noise, each in a process of its own
(wall time and peak RSS from wait4):

- regplan show PLAN                  (text)
- regplan show PLAN --format json
- regplan verify PLAN --trust KEY    (signatures, every item structured, freshness)

The report gives each command's median seconds and peak MiB for both forms, the
Parquet's over the JSON's, and the files' sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from regplan.plans.plan import Plan

REGPLAN = [sys.executable, "-m", "regplan"]
BENCH = [sys.executable, "-m", "tests.benchmarks.bench_planbody"]
"""The plans are written by a process of their own: a child's peak RSS starts at its
parent's (Linux keeps the high-water mark across fork and exec), so the process that
measures holds nothing but the standard library."""
PARQUET_BODY = "parquet.plan.body.parquet"


def _targets(n: int) -> Iterator[dict[str, Any]]:
    """N blob targets as a plan file holds them (valid paths, made up)."""
    for i in range(n):
        h = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
        yield {
            "path": f"blobs/sha256/{h[:2]}/{h}",
            "kind": "blob",
            "reason": "nothing that stays references it",
            "refs": [f"team/app@sha256:{h[::-1]}"],
            "bytes": 1000 + i % 5000,
            "digest": f"sha256:{h}",
        }


def _lists(n: int, real: Plan) -> dict[str, Iterator[Any]]:
    from regplan.plans import codec

    return {
        "targets": _targets(n),
        "kept": codec.unstructure_items(real.kept),
        "problems": codec.unstructure_items(real.problems),
        "images": codec.unstructure_items(real.images),
    }


def write_both(n: int, root: Path, key: Path, out: Path) -> tuple[Path, Path]:
    """The synthetic plan of ``n`` targets, with JSON lists and with a Parquet body."""
    import attrs

    from regplan import workflow
    from regplan.decide.selection import Selection
    from regplan.plans import body as planbody
    from regplan.plans import codec, keys, signing
    from regplan.plans.plan import tally
    from regplan.storage.fs.fsstorage import FsStorage

    private = keys.load(str(key), lambda: None)
    now = datetime.now(UTC)
    sel = Selection(images=(), untagged=("team/*",))
    with workflow.make_plan(
        storage=FsStorage.locate(root), selection=sel, argv=[], key=private, signer="b", now=now
    ) as draft:
        real = workflow.whole(draft)
    summary = tally(("blob", t["bytes"]) for t in _targets(n))
    header = attrs.evolve(
        real, summary=summary, targets=(), kept=(), problems=(), images=(), signatures=()
    )

    def sign(digest: bytes) -> Plan:
        signature = signing.sign_body(digest, private, role="planner", signer="b", now=now)
        return attrs.evolve(header, signatures=(signature,))

    json_plan, parquet_plan = out / "json.plan.json", out / "parquet.plan.json"
    signed = sign(codec.hex_sha256(codec.stream_body_chunks(header, _lists(n, real))))
    with json_plan.open("w", encoding="utf-8") as f:
        f.writelines(codec.raw_pretty_chunks(signed, _lists(n, real)))
    pin = planbody.write(out / PARQUET_BODY, _lists(n, real))
    raw = planbody.pinned(codec.unstructure(header), pin)
    signed = sign(codec.hex_sha256(codec.raw_body_chunks(raw)))
    raw = planbody.pinned(codec.unstructure(signed), pin)
    parquet_plan.write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n")
    return json_plan, parquet_plan


def measure(args: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS MiB, exit code) of one command in a process of its own."""
    began = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen([*REGPLAN, *args], stdout=null, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read() if proc.stderr is not None else b""
        if proc.stderr is not None:
            proc.stderr.close()
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)}: exit {proc.returncode}: {err.decode()[-500:]}")
    return seconds, int(usage.ru_maxrss // 1024), proc.returncode


def run_size(n: int, work: Path, rounds: int) -> dict[str, Any]:
    out = work / f"{n}"
    out.mkdir(parents=True, exist_ok=True)
    key = work / "key"
    began = time.perf_counter()
    subprocess.run([*BENCH, "--write", str(n), "--workdir", str(work)], check=True)
    json_plan, parquet_plan = out / "json.plan.json", out / "parquet.plan.json"
    print(f"{n:,} targets: both plans written in {time.perf_counter() - began:.0f} s", flush=True)
    commands: dict[str, Callable[[Path], list[str]]] = {
        "show": lambda p: ["show", str(p)],
        "show --format json": lambda p: ["show", str(p), "--format", "json"],
        "verify": lambda p: ["verify", str(p), "--trust", f"{key}.pub"],
    }
    samples: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for _ in range(rounds):
        for name, make in commands.items():
            for form, plan in (("json", json_plan), ("parquet", parquet_plan)):
                samples.setdefault((name, form), []).append(measure(make(plan)))
    rows = []
    for name in commands:
        cell = {}
        for form in ("json", "parquet"):
            got = samples[(name, form)]
            cell[form] = {
                "seconds": round(statistics.median(s for s, _, _ in got), 2),
                "peak_mib": max(m for _, m, _ in got),
            }
        j, p = cell["json"], cell["parquet"]
        rows.append(
            {
                "command": name,
                **cell,
                "time_ratio": round(p["seconds"] / j["seconds"], 2),
                "peak_ratio": round(p["peak_mib"] / j["peak_mib"], 2),
            }
        )
    body = out / PARQUET_BODY
    sizes = {
        "json_plan_mb": round(json_plan.stat().st_size / 1e6, 1),
        "parquet_plan_kb": round(parquet_plan.stat().st_size / 1e3, 1),
        "parquet_body_mb": round(body.stat().st_size / 1e6, 1),
    }
    return {"targets": n, "rounds": rounds, "files": sizes, "commands": rows}


def report(results: list[dict[str, Any]]) -> str:
    out = [
        "| targets | command | JSON s | JSON peak MiB | Parquet s | Parquet peak MiB "
        "| time P/J | peak P/J |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for c in r["commands"]:
            j, p = c["json"], c["parquet"]
            out.append(
                f"| {r['targets']:,} | `{c['command']}` | {j['seconds']} | {j['peak_mib']} "
                f"| {p['seconds']} | {p['peak_mib']} | {c['time_ratio']} | {c['peak_ratio']} |"
            )
    for r in results:
        f = r["files"]
        out.append(
            f"\n{r['targets']:,} targets: JSON plan {f['json_plan_mb']} MB; Parquet plan "
            f"{f['parquet_plan_kb']} kB + body {f['parquet_body_mb']} MB"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", action="append", type=float, help="1e6, 1e7 ...")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/regplan-bench-body"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--write", type=int, help=argparse.SUPPRESS)  # the writer's process
    args = parser.parse_args()
    work: Path = args.workdir
    if args.write is not None:
        out = work / str(args.write)
        out.mkdir(parents=True, exist_ok=True)
        write_both(args.write, work / "registry", work / "key", out)
        return
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "registry").exists():
        from regplan.demo.samples import build_demo

        build_demo(work / "registry")
    if not (work / "key").exists():
        subprocess.run([*REGPLAN, "keygen", str(work / "key")], check=True)
    results = [run_size(int(n), work, args.rounds) for n in args.targets or [1e6]]
    text = report(results)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
