"""Plan time with regular expressions, on a bench tree: RE2 next to Python's re (#33).

Run as a script (not part of the test run):

    python -m tests.benchmarks.bench_patterns [--repos 200] [--tags 40] [--rounds 3]
        [--workdir /var/tmp/regplan-bench-patterns] [--code LABEL=DIR ...]

It builds a tree with regplan.demo.samples.build_scale (kept in --workdir for re-runs)
and times, in rounds interleaved over every ``--code`` (a checkout whose ``regplan``
package is run, e.g. ``before=/tmp/old``; default: this one), each in its own process:

- ``plan --image '*' --keep-last 5 --match 'v[0-9]+' --exclude-tags 'v1[0-9]'
  --keep 'v(2|3)[0-9]'`` (every tag is matched against three patterns)
- ``plan --policy`` of two rules with ``tags_regex`` and ``keep.regex``

and reports the median (and the least) seconds of each. The deciding alone (the
selection resolved, where the patterns run) is timed too, in CPU seconds inside each
process (the tree read once, then ``resolve`` five times), which a busy machine
disturbs less than wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from regplan.demo.samples import build_scale

POLICY = """\
version: 1
rules:
  - name: versions
    repositories: ["team*/*"]
    tags_regex: "v[0-9]+"
    exclude_tags_regex: "v1[0-9]"
    keep:
      newest: 5
      regex: "v(2|3)[0-9]"
  - name: odd
    repositories: ["team[1357]/*"]
    keep:
      regex: "v[0-9]*[13579]"
      within: 1d
"""
FLAGS = (
    "--image", "*", "--keep-last", "5", "--match", "v[0-9]+", "--exclude-tags", "v1[0-9]",
    "--keep", "v(2|3)[0-9]",
)  # fmt: skip


def _tree(workdir: Path, repos: int, tags: int) -> Path:
    root = workdir / f"tree-{repos}x{tags}"
    if not (root / "docker").exists():
        t = time.monotonic()
        build_scale(root, repos=repos, tags=tags, pushes=1, index_every=10)
        print(f"built {root} in {time.monotonic() - t:.0f} s", file=sys.stderr)
    return root


DECIDE = """
import sys, time
from pathlib import Path
from datetime import UTC, datetime
from regplan.decide.selection import ImageSpec, Retention, Selection, resolve
from regplan.policy import load
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage
inv = scan(FsStorage.locate(Path(sys.argv[1])))
flags = Selection(images=(ImageSpec.parse("*"),), retention=Retention(
    keep_last=5, match="v[0-9]+", exclude="v1[0-9]", keep="v(2|3)[0-9]"))
policy = Selection(policy=load.read(open(sys.argv[2], "rb").read(), "p.yml"))
now = datetime(2026, 6, 1, tzinfo=UTC)
for name, sel in (("flags", flags), ("policy", policy)):
    t = time.process_time()
    for _ in range(5):
        resolve(sel, inv, now)
    print(name, (time.process_time() - t) / 5)
"""


def _decided(code: Path, root: Path, policy: Path) -> dict[str, float]:
    """CPU seconds of one ``resolve`` of the flags and of the policy, in ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(
        [sys.executable, "-c", DECIDE, str(root), str(policy)], cwd=code, env=env,
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines()}


def _key(workdir: Path) -> Path:
    key = workdir / "bench.key"
    if not key.exists():
        subprocess.run([sys.executable, "-m", "regplan", "keygen", str(key)], check=True)
    return key


def _timed(code: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(code)}
    t = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "regplan", *args], cwd=code, env=env, check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.monotonic() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--tags", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/regplan-bench-patterns"))
    parser.add_argument("--code", action="append", default=[], metavar="LABEL=DIR")
    opts = parser.parse_args()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    root = _tree(opts.workdir, opts.repos, opts.tags)
    key = _key(opts.workdir)
    policy = opts.workdir / "policy.yml"
    policy.write_text(POLICY)
    codes = dict(c.split("=", 1) for c in opts.code) or {"this": str(Path.cwd())}
    out = opts.workdir / "plan.json"
    common = ["plan", "--root", str(root), "--key", str(key), "--signer", "b", "-q", "-o"]
    runs = {"flags": [*common, str(out), *FLAGS], "policy": [*common, str(out), "--policy"]}
    runs["policy"].append(str(policy))
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(opts.rounds):
        for label, code in codes.items():
            for name, args in runs.items():
                times.setdefault((label, name), []).append(_timed(Path(code), args))
            for name, cpu in _decided(Path(code), root, policy).items():
                times.setdefault((label, f"decide {name}"), []).append(cpu)
    print(f"plan on {opts.repos} repositories x {opts.tags} tags, median of {opts.rounds}:")
    for (label, name), ts in sorted(times.items()):
        each = ", ".join(f"{t:.3f}" for t in ts)
        median = statistics.median(ts)
        print(f"  {label:>8} {name:<15} {median:7.3f} s  min {min(ts):.3f}  ({each})")


if __name__ == "__main__":
    main()
