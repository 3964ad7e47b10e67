"""Retention rules, --gc, --gc-min-age and --uploads-older-than (table tests on real trees)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from regplan.decide.decision import Decision
from regplan.decide.flags import Retention
from regplan.decide.planner import decide
from regplan.decide.selection import ImageSpec, Selection, resolve
from regplan.demo.samples import Registry, image, index
from regplan.plans.plan import TargetKind
from regplan.scan.layout import blob_data, blob_dir, layer_dir, revision_dir, tag_dir
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage

# Registry.tag advances its clock a minute per push from 2026-01-01T00:00Z.
T0 = 1_767_225_600.0
NOW = datetime(2026, 1, 2, tzinfo=UTC)


def ten_tags(root: Path) -> list[str]:
    """r has tags t0..t8 then latest, pushed a minute apart in that order."""
    reg = Registry.create(root)
    names = [f"t{i}" for i in range(9)] + ["latest"]
    for i, name in enumerate(names):
        reg.push(
            "r",
            image([{"f": str(i).encode()}], created=f"2025-12-{10 + (i * 7) % 10:02d}T00:00:00Z"),
            name,
        )
    reg.push("other", image([{"o": b"1"}]), "x")
    return names


def plan(root: Path, sel: Selection, now: datetime = NOW) -> Decision:
    inv = scan(
        FsStorage.locate(root),
        created=sel.retention.sort_by == "created",
        mtimes=sel.gc_min_age is not None,
    )
    return decide(inv, resolve(sel, inv, now), prune=sel.prune)


def retention(pattern: str = "r", **rules: Any) -> Selection:
    return Selection(images=(ImageSpec.parse(pattern),), retention=Retention(**rules))


def removed_tags(d: Decision) -> set[str]:
    return {t.path.rsplit("/", 1)[1] for t in d.targets if t.kind == TargetKind.TAG}


@pytest.mark.parametrize(
    ("rules", "gone"),
    [
        ({"keep_last": 3}, {f"t{i}" for i in range(7)}),
        ({"keep_last": 3, "keep": "latest|t0"}, {f"t{i}" for i in range(1, 7)}),
        ({"keep_last": 0, "match": "t[0-4]"}, {f"t{i}" for i in range(5)}),
        ({"keep_last": 5, "exclude": "t[0-2]"}, {"t3", "t4"}),
        # pushed at T0+60 .. T0+600; now is a day later: everything is older than 1h
        ({"older_than": "1h"}, None),  # every tag: the newest is kept, see below
        ({"older_than": "2d"}, set()),
        ({"keep_last": 8, "older_than": "1h"}, {"t0", "t1"}),
        ({"match": "t[78]"}, {"t7", "t8"}),
    ],
)
def test_retention_table(tmp_path: Path, rules: dict[str, Any], gone: set[str] | None) -> None:
    ten_tags(tmp_path)
    d = plan(tmp_path, retention(**rules))
    if gone is None:
        gone = {f"t{i}" for i in range(9)}  # all but the newest, which is kept
        assert (
            "retention would remove every tag of r"
            in {k.path: k.reason for k in d.kept}[tag_dir("r", "latest")]
        )
    assert removed_tags(d) == gone


def test_keep_last_3_keep_latest_removes_the_7_oldest(tmp_path: Path) -> None:
    names = ten_tags(tmp_path)
    d = plan(tmp_path, retention(keep_last=3, keep="latest"))
    assert removed_tags(d) == set(names[:7])
    reasons = {t.path: t.reason for t in d.targets if t.kind == TargetKind.TAG}
    assert reasons[tag_dir("r", "t0")] == "beyond keep-last 3: rank 10 by push time"


def test_reasons_name_the_rule(tmp_path: Path) -> None:
    ten_tags(tmp_path)
    d = plan(tmp_path, retention(keep_last=8, older_than="1h"))
    reasons = {t.path: t.reason for t in d.targets if t.kind == TargetKind.TAG}
    assert reasons[tag_dir("r", "t0")] == (
        "beyond keep-last 8: rank 10 by push time and older than 1h: pushed 2026-01-01 00:01"
    )


def test_allow_empty_repos_removes_the_repository(tmp_path: Path) -> None:
    ten_tags(tmp_path)
    d = plan(tmp_path, retention(older_than="1h", allow_empty_repos=True))
    [t] = [t for t in d.targets if t.kind == TargetKind.REPOSITORY]
    assert t.path == "repositories/r"
    assert "last tag removed" in t.reason


def test_sort_by_created_uses_the_config(tmp_path: Path) -> None:
    """Created times are a shuffle of push order: t3 (2025-12-11) is the oldest but one."""
    ten_tags(tmp_path)
    d = plan(tmp_path, retention(keep_last=8, sort_by="created"))
    created = {f"t{i}": 10 + (i * 7) % 10 for i in range(9)} | {"latest": 10 + (9 * 7) % 10}
    oldest = sorted(created, key=lambda t: (created[t], t))[:2]
    assert removed_tags(d) == set(oldest)
    assert all("by created time" in t.reason for t in d.targets if t.kind == TargetKind.TAG)


def test_sort_by_created_of_an_index_is_its_newest_child(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    reg.push(
        "r",
        index(
            [
                image([{"a": b"1"}], created="2025-01-01T00:00:00Z"),
                image([{"b": b"1"}], arch="arm64", created="2025-06-01T00:00:00Z"),
            ]
        ),
        "multi",
    )
    reg.push("r", image([{"c": b"1"}], created="2025-03-01T00:00:00Z"), "single")
    d = plan(tmp_path, retention(keep_last=1, sort_by="created"))
    assert removed_tags(d) == {"single"}


# -- --gc ----------------------------------------------------------------------


def api_delete(reg: Registry, repo: str, digest: object) -> None:
    """What DELETE /v2/<repo>/manifests/<digest> leaves: the revision folder without its link."""
    (reg.v2 / revision_dir(repo, digest) / "link").unlink()  # type: ignore[arg-type]


def test_gc_sweeps_what_a_deleted_manifest_left(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    base = {"base": b"shared"}
    gone, kept = image([base, {"g": b"1"}]), image([base, {"k": b"1"}])
    reg.push("r", gone, None)
    reg.push("r", kept, "keep")
    reg.push("s", image([base]), "s")
    api_delete(reg, "r", gone.digest)
    d = plan(tmp_path, Selection(gc=True))
    blobs = {t.path for t in d.targets if t.kind == TargetKind.BLOB}
    links = {t.path for t in d.targets if t.kind == TargetKind.LAYER_LINK}
    assert blobs == {blob_dir(b.digest) for b in (gone.manifest, gone.config, gone.layers[1])}
    assert links == {layer_dir("r", b.digest) for b in (gone.config, gone.layers[1])}
    assert all(t.reason.startswith("--gc: ") for t in d.targets)
    assert d.kept == ()  # gc alone does not list every blob it keeps


def test_gc_keeps_index_children_configs_and_referrers(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    kids = [image([{"a": b"1"}]), image([{"b": b"1"}], arch="arm64")]
    multi = index(kids)
    reg.push("r", multi, "multi")
    sig = image([{"sig": b"1"}], subject=multi.manifest)
    reg.push("r", sig, None)
    d = plan(tmp_path, Selection(gc=True, untagged=("*",)))
    assert d.targets == ()


def test_gc_min_age_spares_young_blobs(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    orphan = image([{"o": b"1"}])
    reg.push("r", orphan, None)
    reg.push("r", image([{"k": b"1"}]), "keep")
    api_delete(reg, "r", orphan.digest)
    old = T0
    for b in (orphan.manifest, orphan.config, *orphan.layers):
        os.utime(reg.v2 / blob_data(b.digest), (old, old))
        if b is not orphan.manifest:
            os.utime(reg.v2 / layer_dir("r", b.digest) / "link", (old, old))
    young_blob = orphan.layers[0]
    os.utime(reg.v2 / blob_data(young_blob.digest), None)  # just now
    now = datetime.now(UTC)
    d = plan(tmp_path, Selection(gc=True, gc_min_age="1h"), now=now)
    blobs = {t.path for t in d.targets if t.kind == TargetKind.BLOB}
    assert blob_dir(young_blob.digest) not in blobs
    assert blob_dir(orphan.config.digest) in blobs
    kept = {k.path: k.reason for k in d.kept}
    assert kept[blob_dir(young_blob.digest)] == "--gc: younger than --gc-min-age"
    # a young layer link is spared too, and keeps its blob
    os.utime(reg.v2 / layer_dir("r", orphan.config.digest) / "link", None)
    d = plan(tmp_path, Selection(gc=True, gc_min_age="1h"), now=now)
    assert blob_dir(orphan.config.digest) not in {t.path for t in d.targets}
    assert {k.path: k.reason for k in d.kept}[layer_dir("r", orphan.config.digest)] == (
        "--gc: younger than --gc-min-age"
    )


def test_gc_fails_closed_on_an_unreadable_manifest(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    bad = image([{"b": b"1"}])
    reg.push("r", bad, "bad")
    (reg.v2 / blob_data(bad.digest)).write_bytes(b"not json")
    d = plan(tmp_path, Selection(gc=True))
    assert d.targets == ()
    assert any("fail closed" in k.reason for k in d.kept)


# -- uploads -------------------------------------------------------------------


def test_uploads_older_than(tmp_path: Path) -> None:
    reg = Registry.create(tmp_path)
    reg.push("r", image([{"a": b"1"}]), "t")
    reg.upload("r", "old", "2025-12-01T10:00:00Z", b"partial")
    reg.upload("r", "new", "2026-01-01T23:30:00.123456789Z", b"partial")
    reg.upload("r", "garbled", "yesterday", b"x")
    (reg.v2 / "repositories/r/_uploads/missing").mkdir()
    d = plan(tmp_path, Selection(uploads_older_than="7d"))
    assert [(t.path, t.reason) for t in d.targets] == [
        ("repositories/r/_uploads/old", "--uploads-older-than 7d: started 2025-12-01 10:00")
    ]
    kept = {k.path: k.reason for k in d.kept}
    assert kept["repositories/r/_uploads/missing"] == "no startedat: cannot tell its age"
    assert kept["repositories/r/_uploads/garbled"] == "unreadable startedat: cannot tell its age"
    assert len([p for p in d.problems if "_uploads" in p.path]) == 2


def test_gc_min_age_through_make_plan_sweeps_old_layer_links(tmp_path: Path) -> None:
    """The CLI's path: make_plan must record layer link ages when --gc-min-age is given
    (an unknown age counts as young, which would spare every link and its blob)."""
    from tests.helpers import make_plan

    reg = Registry.create(tmp_path)
    orphan = image([{"o": b"1"}])
    reg.push("r", orphan, None)
    reg.push("r", image([{"k": b"1"}]), "keep")
    api_delete(reg, "r", orphan.digest)
    for dirpath, _, files in os.walk(reg.v2):
        for f in files:
            os.utime(os.path.join(dirpath, f), (T0, T0))
    plan = make_plan(tmp_path, Selection(gc=True, gc_min_age="1h"))
    links = {t.path for t in plan.targets if t.kind == TargetKind.LAYER_LINK}
    assert links == {layer_dir("r", b.digest) for b in (orphan.config, orphan.layers[0])}
    assert blob_dir(orphan.layers[0].digest) in {t.path for t in plan.targets}


def test_sort_by_created_keeps_what_it_cannot_date(tmp_path: Path) -> None:
    """#21.3: an artifact whose config has no `created` (a Helm chart) is kept and
    reported, however old the others are; the dated tags are ranked among themselves."""
    reg = Registry.create(tmp_path)
    reg.push("r", image([{"a": b"1"}], created="2020-01-01T00:00:00Z"), "old")
    reg.push("r", image([{"b": b"1"}], created="2020-02-01T00:00:00Z"), "older")
    reg.push("r", image([{"c": b"1"}], created=None), "chart")
    reg.push("r", image([{"d": b"1"}], created="2025-12-01T00:00:00Z"), "new")
    d = plan(tmp_path, retention(keep_last=1, older_than="30d", sort_by="created"))
    gone = {t.path.rsplit("/", 1)[1] for t in d.targets if t.kind == TargetKind.TAG}
    assert gone == {"old", "older"}
    kept = {k.path: k.reason for k in d.kept}
    assert kept["repositories/r/_manifests/tags/chart"].startswith("no created time: cannot tell")
    assert [p.path for p in d.problems] == ["repositories/r/_manifests/tags/chart"]
