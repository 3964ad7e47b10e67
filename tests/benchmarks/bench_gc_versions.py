"""distribution 2.8's and v3.1's garbage-collect next to regplan, on one tree.

Run as a script (not part of the test run; needs docker-registry and the v3 build):

    python -m tests.benchmarks.bench_gc_versions [--size small|250k] [--rounds 3]
        [--workdir /var/tmp/regplan-bench] [--out bench-results/gc-versions.json]

The tree is bench_scale's (regplan.demo.samples.build_scale: every tenth tag a
two-platform index, every fourth re-pushed). In each round, interleaved so that every
command sees the same machine noise: ``regplan plan --untagged '*' --gc``, then for
each version ``garbage-collect --dry-run`` (mark only) and ``garbage-collect --dry-run
--delete-untagged``. The report gives each command's median time and peak RSS, and what
each would remove: manifests, blobs, and how many of those manifests are children of
an index that a tag keeps (each one a multi-arch image broken).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_scale import REGPLAN, SIZES, prepare, run
from tests.integration.realreg import VERSIONS as REGISTRIES
from tests.integration.realreg import registry_binary

MANIFEST = re.compile(r"manifest eligible for deletion: \{?(?:\S+ )?(sha256:[0-9a-f]{64})")
BLOB = re.compile(r"blob eligible for deletion: (sha256:[0-9a-f]{64})")


def kept_children(root: Path) -> set[str]:
    """Digests listed by an index that a tag points at (read as plain JSON)."""
    v2 = root / "docker/registry/v2"
    out: set[str] = set()
    for link in v2.glob("repositories/*/*/_manifests/tags/*/current/link"):
        digest = link.read_text().strip()
        data = v2 / "blobs/sha256" / digest[7:9] / digest[7:] / "data"
        doc = json.loads(data.read_bytes())
        out.update(m["digest"] for m in doc.get("manifests", []))
    return out


def regplan_removes(plan: Path) -> tuple[set[str], set[str]]:
    """(manifests, blobs) a plan's targets remove."""
    targets = json.loads(plan.read_bytes())["targets"]
    revisions = {
        "sha256:" + t["path"].rsplit("/", 1)[1] for t in targets if t["kind"] == "revision"
    }
    blobs = {"sha256:" + t["path"].rsplit("/", 1)[1] for t in targets if t["kind"] == "blob"}
    return revisions, blobs


def binaries() -> dict[str, str]:
    """Each registry version's command (realreg.registry_binary); stop when one is missing."""
    found = {v: registry_binary(v) for v in REGISTRIES}
    missing = [f"{v}: {where}" for v, (binary, where) in found.items() if binary is None]
    if missing:
        raise SystemExit("bench_gc_versions needs both registries: " + "; ".join(missing))
    return {v: binary for v, (binary, _) in found.items() if binary is not None}


def eligible(log: Path) -> tuple[set[str], set[str]]:
    """(manifests, blobs) a garbage-collect's output lists as eligible, read line by line."""
    manifests: set[str] = set()
    blobs: set[str] = set()
    with log.open(errors="replace") as lines:
        for line in lines:
            if found := MANIFEST.search(line):
                manifests.add(found.group(1))
            elif found := BLOB.match(line):
                blobs.add(found.group(1))
    return manifests, blobs


def bench(size: str, rounds: int, workdir: Path) -> dict[str, Any]:
    root, config, built = prepare(size, workdir)
    plan = root.parent / "gc-versions.plan.json"
    key = root.parent / "bench.key"
    children = kept_children(root)
    versions = binaries()
    times: dict[str, list[tuple[float, int]]] = {}
    removes: dict[str, tuple[set[str], set[str]]] = {}
    for n in range(rounds):
        cmd = [*REGPLAN, "plan", "--root", str(root), "--key", str(key), "-o", str(plan)]
        s, mib, _ = run([*cmd, "--untagged", "*", "--gc", "-q", "--json"])
        times.setdefault("regplan plan --untagged '*' --gc", []).append((s, mib))
        removes["regplan plan --untagged '*' --gc"] = regplan_removes(plan)
        for version, binary in versions.items():
            for flags in (["--dry-run"], ["--dry-run", "--delete-untagged"]):
                name = f"garbage-collect {' '.join(flags)} ({version})"
                log = root.parent / "gc-versions.out"
                s, mib, _ = run([binary, "garbage-collect", *flags, str(config)], output=log)
                times.setdefault(name, []).append((s, mib))
                removes[name] = eligible(log)
        print(f"  round {n + 1} done", flush=True)
    rows = []
    ours = removes["regplan plan --untagged '*' --gc"]
    for name, samples in times.items():
        manifests, blobs = removes[name]
        rows.append(
            {
                "command": name,
                "seconds": round(statistics.median(s for s, _ in samples), 2),
                "peak_mib": max(m for _, m in samples),
                "manifests": len(manifests),
                "kept_index_children": len(manifests & children),
                "blobs": len(blobs),
                "same_as_regplan": (manifests, blobs) == ours,
            }
        )
    return {"size": size, "tree": built, "rounds": rounds, "rows": rows}


def table(report: dict[str, Any]) -> str:
    lines = [
        f"tree {report['size']}: {report['tree']['paths']:,} paths, {report['rounds']} rounds",
        "| command | s (median) | peak MiB | manifests | of them children of a kept index "
        "| blobs | the same as regplan's |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| `{r['command']}` | {r['seconds']} | {r['peak_mib']} | {r['manifests']} "
        f"| {r['kept_index_children']} | {r['blobs']} | {'yes' if r['same_as_regplan'] else 'no'} |"
        for r in report["rows"]
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/regplan-bench"))
    parser.add_argument("--out", type=Path, default=Path("bench-results/gc-versions.json"))
    args = parser.parse_args()
    report = bench(args.size, args.rounds, args.workdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
