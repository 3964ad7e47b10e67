"""``--leftovers-older-than`` (#23): the temporary files a registry write never renamed
go when older than the age, with the reason; younger ones, or any inside a folder that
goes anyway, are not targets of their own; a plan cannot name anything else as one."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.decide.selection import ImageSpec, Selection
from regplan.plans.plan import Plan, Target, TargetKind
from regplan.scan.layout import path_problem
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import LEFTOVER, NOW, make_plan, plant_leftovers, write_keys

OLD = (NOW - timedelta(days=3)).timestamp()


def leftovers(plan: Plan) -> dict[str, str]:
    return {t.path: t.reason for t in plan.targets if t.kind is TargetKind.LEFTOVER}


def test_older_than_the_age_they_go_with_what_they_stood_for(demo_root: Path) -> None:
    link, data = plant_leftovers(demo_root, OLD)
    plan = make_plan(demo_root, Selection(leftovers_older_than="2d"))
    assert leftovers(plan) == {
        link: "--leftovers-older-than 2d: a link the registry never finished writing, "
        "written 2026-11-25 10:15",
        data: "--leftovers-older-than 2d: a data the registry never finished writing, "
        "written 2026-11-25 10:15",
    }
    assert {t.bytes for t in plan.targets} == {71, 11}  # the files' own sizes
    assert {p.path for p in plan.problems} >= {link, data}  # still reported


def test_younger_than_the_age_they_stay_with_the_reason(demo_root: Path) -> None:
    link, data = plant_leftovers(demo_root, OLD)
    os.utime(FsStorage.locate(demo_root).v2 / link, (NOW.timestamp(), NOW.timestamp()))
    plan = make_plan(demo_root, Selection(leftovers_older_than="2d"))
    assert list(leftovers(plan)) == [data]
    kept = {k.path: k.reason for k in plan.kept}
    assert kept[link] == (
        "--leftovers-older-than 2d: written 2026-11-28 10:15, a write may be under way"
    )


def test_without_the_option_none_goes(demo_root: Path) -> None:
    plant_leftovers(demo_root, OLD)
    plan = make_plan(demo_root, Selection(gc=True, untagged=("*",), prune=True))
    assert not leftovers(plan)


def test_one_inside_a_folder_that_goes_goes_with_it(demo_root: Path) -> None:
    """The repository holding the tag's leftover goes whole: no target of its own (a plan
    never holds a target inside another); the blob's leftover still goes alone."""
    link, data = plant_leftovers(demo_root, OLD)
    repo = link.split("/_manifests/")[0].removeprefix("repositories/")
    sel = Selection(images=(ImageSpec.parse(repo),), leftovers_older_than="2d")
    plan = make_plan(demo_root, sel)
    assert list(leftovers(plan)) == [data]
    assert f"repositories/{repo}" in {t.path for t in plan.targets}


@pytest.mark.parametrize(
    ("path", "fits"),
    [
        (f"repositories/a/b/_manifests/tags/t/current/link{LEFTOVER}", True),
        (f"repositories/a/_layers/sha256/{'ab' * 32}/link{LEFTOVER}", True),
        (f"blobs/sha256/ab/{'ab' * 32}/data{LEFTOVER}", True),
        (f"repositories/a/data{LEFTOVER}", False),  # a repository may be named so
        (f"blobs/sha256/ab/{'ab' * 32}", False),
        ("repositories/a/_manifests/tags/t/current/link", False),
        (f"repositories/a/_manifests/tags/t/current/link{LEFTOVER}/../x", False),
    ],
)
def test_a_leftover_target_is_a_temporary_file_and_nothing_else(path: str, fits: bool) -> None:
    """A re-signed plan still cannot move a link, a blob or a repository as a leftover."""
    assert (path_problem(path, "leftover") is None) is fits


def test_a_leftover_target_that_became_a_folder_is_refused(demo_root: Path) -> None:
    """What a leftover target names must be a regular file when apply moves it."""
    keys = write_keys(demo_root.parent)
    link, _ = plant_leftovers(demo_root, OLD)
    out = demo_root.parent / "p.json"
    r = CliRunner().invoke(cli, ["plan", "--root", str(demo_root), "--key", str(keys[0]),
                                 "-o", str(out), "-q", "--leftovers-older-than", "1d"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert link in {t["path"] for t in json.loads(out.read_bytes())["targets"]}
    v2 = FsStorage.locate(demo_root).v2
    (v2 / link).unlink()
    (v2 / link).mkdir()
    apply = ["apply", str(out), "--trust", str(keys[1]), "-q", "--registry-stopped"]
    r = CliRunner().invoke(cli, [*apply, "--exact"])
    assert r.exit_code == 4, r.output  # stale: the storage changed since the plan
    assert (v2 / link).is_dir()
    r = CliRunner().invoke(cli, [*apply, "--json"])
    assert r.exit_code == 0, r.output  # the rest applies; the changed one is skipped (#32)
    assert {"path": link, "why": "changed since the plan (pushed again?)"} in json.loads(r.stdout)[
        "skipped"
    ]
    assert (v2 / link).is_dir()


def test_a_bad_age_is_a_one_line_error(demo_root: Path) -> None:
    key, _ = write_keys(demo_root.parent)
    args = ["--key", str(key), "--leftovers-older-than", "3x"]
    r = CliRunner().invoke(cli, ["plan", "--root", str(demo_root), *args])
    assert r.exit_code == 64, r.output  # a usage error (README: exit codes)
    [line] = r.output.strip().splitlines()[-1:]
    assert "leftovers" in line and "3x" in line


def test_the_plan_records_the_age(demo_root: Path) -> None:
    plant_leftovers(demo_root, OLD)
    plan = make_plan(demo_root, Selection(leftovers_older_than="2d"))
    recorded = plan.request.selection if plan.request is not None else None
    assert recorded is not None and recorded.leftovers_older_than == "2d"
    assert attrs.evolve(recorded, leftovers_older_than=None) != recorded


def test_a_plan_cannot_name_a_folder_as_a_leftover() -> None:
    with pytest.raises(ValueError, match="is not the path of a leftover"):
        Target(path=f"blobs/sha256/ab/{'ab' * 32}", kind=TargetKind.LEFTOVER, reason="x")
