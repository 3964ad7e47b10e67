"""Golden plans (#34): plans made by regplan before retention had one engine, over many
flag combinations and a few policies, re-decide the same today.

Each file in ``tests/golden/`` is a plan made from one of the sample registries below
(deterministic: fixed push times, fixed file times, a fixed clock) by the command line's
own parsing of the recorded arguments. The test makes the plan again from the same
arguments on a freshly built registry and requires the same request record (argv and
selection), targets, kept, problems and image verdicts, each reason word for word.

The files were written by the code before the change (``REGPLAN_GOLDEN_WRITE=1``);
writing them again would only prove the code agrees with itself: do it only for a new
case, and read the diff.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from regplan import workflow
from regplan.cli import planning
from regplan.decide.flags import FLAGS
from regplan.demo.samples import Registry, build_demo, build_scale, image, index
from regplan.plans import codec
from regplan.scan.layout import tag_dir
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import KEY

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 1, 1, 0, 20, tzinfo=UTC)
"""The clock: the sample registries' tags are pushed a minute apart from 2026-01-01."""
T0 = 1_767_225_600.0
FILES_AT = T0 - 3600.0
"""Every file but the tags' current links (blobs, revision links, uploads) is this old."""
ROOT = "/golden/registry"


def _settle(root: Path) -> None:
    """Give every file but the tags' current links (which carry the push times) one time."""
    for base, _, files in os.walk(root):
        for f in files:
            path = Path(base) / f
            if not (path.name == "link" and path.parent.name == "current"):
                os.utime(path, (FILES_AT, FILES_AT))


def _demo(root: Path) -> None:
    """The demo registry, an upload from 2025 and one from today."""
    build_demo(root)
    reg = Registry(v2=root / "docker/registry/v2")
    reg.upload("team/app", "old-upload", "2025-12-01T00:00:00Z", b"x")
    reg.upload("team/app", "new-upload", "2026-01-01T00:19:00Z", b"y")


def _ten(root: Path) -> None:
    """r: t0..t8 then latest a minute apart, created times out of push order, one
    config without a created time (undated by created), an index; other: two tags and
    one whose current link is gone."""
    reg = Registry.create(root)
    names = [f"t{i}" for i in range(9)] + ["latest"]
    for i, name in enumerate(names):
        created = None if i == 4 else f"2025-12-{10 + (i * 7) % 10:02d}T00:00:00Z"
        reg.push("r", image([{"f": str(i).encode()}], created=created), name)
    multi = index([image([{"a": b"1"}], arch="amd64"), image([{"a": b"2"}], arch="arm64")])
    reg.push("r", multi, "multi")
    reg.push("other", image([{"o": b"1"}]), "x")
    reg.push("other", image([{"o": b"2"}]), "y")
    reg.push("other", image([{"o": b"3"}]), "gone")
    (root / "docker/registry/v2" / tag_dir("other", "gone") / "current/link").unlink()


def _scale(root: Path) -> None:
    """The scale sample, its pushes moved two hours back: every tag pushed before the
    clock (a push later than the plan's time is no age since #33)."""
    build_scale(root, repos=5, tags=12, pushes=2, index_every=5, repush_every=3)
    for link in root.rglob("current/link"):
        t = link.stat().st_mtime - 7200
        os.utime(link, (t, t))


def _ties(root: Path) -> None:
    """Tags pushed in the same second (rank ties are broken by name)."""
    reg = Registry.create(root)
    for name in ("b", "a", "d", "c", "e"):
        reg.push("tie/x", image([{"t": name.encode()}]), name)
    for name in ("b", "a", "d", "c"):
        current = root / "docker/registry/v2" / tag_dir("tie/x", name) / "current/link"
        os.utime(current, (T0 + 120, T0 + 120))


REGISTRIES: dict[str, Callable[[Path], None]] = {
    "demo": _demo,
    "ten": _ten,
    "scale": _scale,
    "ties": _ties,
}

PROTECT = "team/app:v1\nold/repo@{old}\n# a comment\nr:t1\nteam3/svc3:v2\n"

POLICY_DEMO = """\
version: 1
rules:
  - name: team
    repositories: ["team/*"]
    exclude: ["team/signed"]
    keep:
      newest: 1
      regex: "v1"
    untagged: 10m
  - name: old
    repositories: ["old/*", "team/signed"]
    tags: ["20*", "v*"]
    keep:
      within: 8m
    allow_empty: true
registry:
  uploads_older_than: 1d
  gc: true
  prune: true
"""

POLICY_TEN = """\
version: 1
rules:
  - name: created
    repositories: ["r"]
    tags_regex: "t[0-9]"
    keep:
      newest: 3
      by: created
  - name: all
    repositories: ["*"]
    keep:
      within: 15m
      tags: ["latest"]
    untagged: 1h
"""

POLICY_SCALE = """\
version: 1
rules:
  - name: keep-3
    repositories: ["team*/*"]
    exclude: ["team1/*"]
    keep:
      newest: 3
  - name: releases
    repositories: ["team[0-3]/*"]
    tags_regex: "v1[0-9]?"
    keep:
      all: true
  - name: empty-ok
    repositories: ["team1/*"]
    keep:
      newest: 0
    allow_empty: true
    untagged: 1m
"""

POLICIES = {"demo.yml": POLICY_DEMO, "ten.yml": POLICY_TEN, "scale.yml": POLICY_SCALE}

CASES: dict[str, tuple[str, str]] = {
    # name: (registry, the arguments after --root, as a shell would split them)
    "demo-image-tag": ("demo", "--image team/app:v1"),
    "demo-image-repo": ("demo", '--image old/repo --untagged "team/*"'),
    "demo-image-globs": ("demo", '--image "team/app:v*" --image team/signed:v1'),
    "demo-keep-last-1": ("demo", "--image team/app --keep-last 1"),
    "demo-keep-last-1-all": ("demo", '--image "*" --keep-last 1'),
    "demo-keep-last-0": ("demo", '--image "team/*" --keep-last 0'),
    "demo-keep-last-0-empty": (
        "demo",
        '--image "team/*" --image "old/*" --keep-last 0 --allow-empty-repos',
    ),
    "demo-older-than": ("demo", '--image "*" --older-than 12m'),
    "demo-older-than-empty": ("demo", '--image "*" --older-than 5m --allow-empty-repos'),
    "demo-both": ("demo", '--image "*" --keep-last 1 --older-than 14m'),
    "demo-tag-glob-keep-last": ("demo", '--image "team/app:v*" --keep-last 1'),
    "demo-overlapping-specs": ("demo", '--image "team/app:v*" --image "team/*" --keep-last 1'),
    "demo-match": ("demo", '--image "*" --match "v.*|20.*"'),
    "demo-match-keep-last": ("demo", '--image "*" --match "v.*" --keep-last 1'),
    "demo-exclude": ("demo", '--image "*" --exclude "latest|2020"'),
    "demo-exclude-keep-last": ("demo", '--image "team/*" --exclude v2 --keep-last 0'),
    "demo-keep": ("demo", '--image "*" --keep "v1|2019" --keep-last 0'),
    "demo-keep-only": ("demo", '--image "*" --keep latest'),
    "demo-everything": (
        "demo",
        '--image "team/*" --keep-last 1 --older-than 1m --match "[a-z0-9.]+" '
        '--exclude stable --keep "1[.]0" --untagged "team/*" --gc --gc-min-age '
        "30m --uploads-older-than 1d --leftovers-older-than 1h --prune",
    ),
    "demo-protect": ("demo", '--image "*" --keep-last 0 --protect "{protect}"'),
    "demo-protect-repo": ("demo", '--image team/app --protect "{protect}"'),
    "demo-gc-prune": ("demo", '--untagged "*" --gc --prune'),
    "demo-gc-min-age": ("demo", "--untagged team/app --gc --gc-min-age 2h"),
    "demo-uploads": ("demo", "--uploads-older-than 1h"),
    "demo-policy": ("demo", '--policy "{policies}/demo.yml"'),
    "demo-policy-protect": ("demo", '--policy "{policies}/demo.yml" --protect "{protect}"'),
    "ten-keep-last-3": ("ten", "--image r --keep-last 3"),
    "ten-created": ("ten", "--image r --keep-last 3 --sort-by created"),
    "ten-created-older": (
        "ten",
        '--image "*" --older-than 20d --sort-by created --allow-empty-repos',
    ),
    "ten-match-exclude": ("ten", '--image r --match "t.*" --exclude "t[0-2]" --keep-last 2'),
    "ten-older-keep": ("ten", '--image "*" --older-than 15m --keep "t[13579]"'),
    "ten-image-tags": ("ten", '--image "r:t*" --keep-last 4 --keep-last 2'),
    "ten-protect": ("ten", '--image r --keep-last 1 --protect "{protect}"'),
    "ten-policy": ("ten", '--policy "{policies}/ten.yml"'),
    "scale-keep-last": ("scale", '--image "team*/*" --keep-last 3'),
    "scale-older": ("scale", '--image "team0/*" --older-than 5m'),
    "scale-exclude": (
        "scale",
        '--image "team0/*" --exclude "v[0-4]" --keep-last 2 --older-than 9m',
    ),
    "scale-mixed": (
        "scale",
        '--image "team[0-3]/*:v1*" --image "team4/*" --keep-last 2 --older-than '
        '30m --keep "v1[05]" --untagged "team2/*"',
    ),
    "scale-protect": ("scale", '--image "team3/*" --keep-last 0 --protect "{protect}" --gc'),
    "scale-policy": ("scale", '--policy "{policies}/scale.yml"'),
    "ties-keep-last": ("ties", "--image tie/x --keep-last 2"),
    "ties-older": ("ties", "--image tie/x --older-than 1m"),
}


COMPARED = ("targets", "kept", "problems", "images")


def _args(args: str, tmp: Path) -> list[str]:
    policies = tmp / "policies"
    policies.mkdir(exist_ok=True)
    for name, text in POLICIES.items():
        (policies / name).write_text(text)
    protect = tmp / "protect.txt"
    old = "sha256:" + "0" * 64
    protect.write_text(PROTECT.format(old=old))
    return [a.format(protect=protect, policies=policies) for a in shlex.split(args)]


def _plan(registry: str, args: str, tmp: Path) -> dict[str, Any]:
    """The plan the command line makes of ``args`` on a fresh sample registry, as JSON
    with the temporary paths replaced by stable ones."""
    root = tmp / "registry"
    REGISTRIES[registry](root)
    _settle(root)
    key = tmp / "plan.key"
    key.write_bytes(b"")
    given = ["--root", str(root), "--key", str(key), *_args(args, tmp)]
    ctx = planning.plan.make_context("plan", given)
    params = ctx.params
    storage = FsStorage.locate(root)
    with workflow.make_plan(
        storage=storage,
        selection=planning._selection(params),
        argv=planning._argv(storage, params),
        key=KEY,
        signer="golden",
        now=NOW,
    ) as draft:
        plan = workflow.whole(draft)
    ctx.close()
    text = "".join(codec.pretty_chunks(plan))
    text = text.replace(str(root), ROOT).replace(str(tmp), "/golden")
    doc: dict[str, Any] = json.loads(text)
    return doc


def _as_golden(items: list[dict[str, Any]], golden: list[dict[str, Any]]) -> list[Any]:
    """``items`` with only the fields their golden counterparts have: a field a later
    format adds (a target's digest) is not a decision."""
    if len(items) != len(golden):
        return items
    return [{k: item.get(k) for k in old} for item, old in zip(items, golden, strict=True)]


def _respelled(arg: str) -> str:
    """An argument as the argv records it now: a flag by its name, not an old spelling
    (``--exclude`` is ``--exclude-tags``)."""
    for f in FLAGS:
        if f.alias is not None and arg.startswith(f"{f.alias}="):
            return f.option + arg.removeprefix(f.alias)
    return arg


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_plan_decides_the_same(case: str, tmp_path: Path) -> None:
    """The same arguments on the same registry: the same record and the same decisions."""
    registry, args = CASES[case]
    now = _plan(registry, args, tmp_path)
    path = GOLDEN / f"{case}.plan.json"
    if os.environ.get("REGPLAN_GOLDEN_WRITE") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
    golden = json.loads(path.read_text())
    assert now["request"]["argv"] == [_respelled(a) for a in golden["request"]["argv"]]
    assert now["request"]["selection"] == golden["request"]["selection"]
    assert now["request"].get("policy") == golden["request"].get("policy")
    for part in COMPARED:
        assert _as_golden(now[part], golden[part]) == golden[part], part
    assert now["summary"] == golden["summary"]
