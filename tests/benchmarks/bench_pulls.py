"""Benchmark of pull records (#37): ``pulls import`` of a big access log, and what
``--pulls`` adds to a plan.

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_pulls [--lines 1000000] [--rounds 3]
        [--workdir /var/tmp/regplan-pulls-bench] [--out bench-results/pulls.json]

1. A registry log of ``--lines`` lines as distribution writes it with
   ``log.formatter: json`` (each request's ``response completed`` line, and the
   combined-format access line beside it; a third of the requests are manifest GETs
   and HEADs of the 250k bench tree's tags, by tag or by digest, over 40 days up to
   now) is imported into a new pull store (``pulls import``): lines per second and
   peak RSS; then imported again into the same store (idempotent: it adds nothing).
2. On the 250k bench tree (bench_scale's, built once in --workdir), interleaved in
   each round: ``plan --image '*' --keep-last 10`` without pull records, the same with
   ``--pulls`` (the reviews' last pulls only), and ``--pulled-within 30d --pulls``
   (retention by pull): time and peak RSS, and the ratios to the plan without.

Every command runs as its own process (bench_scale.run: wall time and peak RSS by
wait4). The report gives medians and ratios, as a table and as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_scale import REGPLAN, prepare, run

DAY = 86400.0


def tags_of(root: Path, most: int = 20_000) -> list[tuple[str, str, str]]:
    """(repository, tag, digest) of up to ``most`` tags of the tree (read from links)."""
    repos = root / "docker/registry/v2/repositories"
    out = []
    for link in sorted(repos.glob("*/*/_manifests/tags/*/current/link"))[:most]:
        tag_dir = link.parent.parent
        repo = str(tag_dir.parent.parent.parent.relative_to(repos))
        out.append((repo, tag_dir.name, link.read_text()))
    return out


def write_log(path: Path, lines: int, tags: list[tuple[str, str, str]], seed: int = 7) -> int:
    """A JSON-formatter registry log of ``lines`` lines over the 40 days up to now;
    how many of them are manifest pulls."""
    rng = random.Random(seed)  # noqa: S311 (a benchmark's sample, not a secret)
    now = time.time()
    start = now - 40 * DAY
    step = (now - 60 - start) / lines
    pulls = 0
    with path.open("w") as f:
        for n in range(0, lines, 2):
            at = start + n * step
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{n % 1000:03d}000000Z"
            repo, tag, digest = rng.choice(tags)
            kind = rng.random()
            if kind < 1 / 3:
                ref = tag if rng.random() < 0.5 else digest
                uri, method = f"/v2/{repo}/manifests/{ref}", rng.choice(("GET", "GET", "HEAD"))
                pulls += 1
            else:
                uri, method = f"/v2/{repo}/blobs/{digest}", "GET"
            f.write(
                '{"go.version":"go1.19.8","http.request.host":"registry:5000",'
                f'"http.request.id":"{rng.getrandbits(128):032x}","http.request.method":"{method}",'
                f'"http.request.remoteaddr":"10.0.0.{n % 250}:40000",'
                f'"http.request.uri":"{uri}",'
                '"http.request.useragent":"containerd/1.7","http.response.contenttype":'
                '"application/vnd.oci.image.manifest.v1+json","http.response.duration":"1.2ms",'
                '"http.response.status":200,"http.response.written":664,"level":"info",'
                f'"msg":"response completed","time":"{stamp}"}}\n'
            )
            day = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(at))
            agent = '"" "containerd/1.7"'
            f.write(f'10.0.0.{n % 250} - - [{day}] "{method} {uri} HTTP/1.1" 200 664 {agent}\n')
    return pulls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/regplan-pulls-bench"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    root, _, built = prepare("250k", args.workdir)
    key = args.workdir / "250k" / "bench.key"
    tags = tags_of(root)
    log = args.workdir / "registry.log"
    pulls = write_log(log, args.lines, tags)
    print(f"log: {args.lines:,} lines, {pulls:,} manifest pulls, {log.stat().st_size >> 20} MiB")

    steps: dict[str, list[tuple[float, int]]] = {}

    def record(name: str, result: tuple[float, int, str]) -> None:
        steps.setdefault(name, []).append(result[:2])
        print(f"  {name:<34}{result[0]:>9.2f} s{result[1]:>8} MiB", flush=True)

    db = args.workdir / "pulls.db"
    for r in range(args.rounds):
        print(f"round {r + 1}")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        record(
            "pulls import (new store)",
            run([*REGPLAN, "pulls", "import", "--db", str(db), str(log)]),
        )
        record(
            "pulls import (again)", run([*REGPLAN, "pulls", "import", "--db", str(db), str(log)])
        )
        out = args.workdir / "p.json"
        base = [*REGPLAN, "plan", "--root", str(root), "--key", str(key), "-o", str(out), "-q"]
        record("plan --keep-last 10", run([*base, "--image", "*", "--keep-last", "10"]))
        record(
            "plan --keep-last 10 --pulls",
            run([*base, "--image", "*", "--keep-last", "10", "--pulls", str(db)]),
        )
        record(
            "plan --pulled-within 30d --pulls",
            run([*base, "--image", "*", "--pulled-within", "30d", "--pulls", str(db)]),
        )
    med = {k: statistics.median(s for s, _ in v) for k, v in steps.items()}
    mem = {k: max(m for _, m in v) for k, v in steps.items()}
    plain = med["plan --keep-last 10"]
    report: dict[str, Any] = {
        "lines": args.lines,
        "manifest_pulls": pulls,
        "tree": built,
        "rounds": args.rounds,
        "median_seconds": med,
        "peak_rss_mib": mem,
        "import_lines_per_second": args.lines / med["pulls import (new store)"],
        "ratios": {
            "plan --pulls / plan": med["plan --keep-last 10 --pulls"] / plain,
            "plan --pulled-within / plan": med["plan --pulled-within 30d --pulls"] / plain,
        },
    }
    print(f"import: {report['import_lines_per_second']:,.0f} lines/s")
    for k, v in report["ratios"].items():
        print(f"  {k:<34}{v:>9.2f}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
