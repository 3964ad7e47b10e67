"""An approved plan on a registry pushed to since planning (#32): apply moves a target only
while the plan lists it, it is as planned, the plan's own request decided again still
removes it, and nothing that stays needs it; the rest is skipped, each with why, and
every image that stays is whole."""

from __future__ import annotations

import errno
import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from regplan import apply
from regplan.changes.recheck import CHANGED, UNSELECTED
from regplan.changes.transaction import ApplyResult
from regplan.cli import cli
from regplan.decide import needs
from regplan.decide.selection import Selection
from regplan.demo.samples import BASE, Registry, build_demo, image
from regplan.errors import ApplyError, StalePlanError
from regplan.plans.signing import load_trusted
from regplan.scan.layout import blob_dir, layer_dir, revision_dir, tag_dir
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.location import Location
from regplan.storage.seam import Store
from tests.helpers import (
    KEY,
    NOW,
    FaultyDisk,
    docker_hashes,
    on_disk,
    selection,
    sign_raw,
    write_plan_file,
    write_pub,
)

LATER = 2_000_000_000.0
"""Pushes after planning: later than anything the sample registry holds."""


def _apply(
    root: Path, plan: Path, opener: Callable[[Location], Store] = location.store
) -> ApplyResult:
    pub = write_pub(KEY, plan.with_suffix(".pub"))
    return apply.apply_plan(
        plan_path=plan, trusted=[load_trusted(pub)], root=None, required=1, now=NOW, opener=opener
    )


def _broken(root: Path) -> list[str]:
    """Every tag of the tree whose image is not whole: its revision, manifest blob,
    config and layers (blobs and layer links) and index children must all be there."""
    inv = location.read(FsStorage.locate(root))
    v2 = FsStorage.locate(root).v2
    out = []
    for name, repo in inv.repositories.items():
        for tag, t in repo.tags.items():
            todo = [t.current] if t.current else []
            while todo:
                d = todo.pop()
                need = [revision_dir(name, d), blob_dir(d)]
                m = inv.manifests.get(d)
                if m is not None:
                    need += [p for b in m.blobs for p in (blob_dir(b), layer_dir(name, b))]
                    todo += list(m.children)
                out += [f"{name}:{tag} lacks {p}" for p in need if not (v2 / p).exists()]
    return out


def _plan(root: Path, tmp_path: Path, sel: Selection) -> Path:
    path = tmp_path / "p.json"
    write_plan_file(root, sel, path)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    build_demo(tmp_path / "registry")
    return tmp_path / "registry"


def test_a_blob_a_new_push_uses_stays_and_the_new_image_is_whole(
    root: Path, tmp_path: Path
) -> None:
    plan = _plan(root, tmp_path, attrs.evolve(selection(("old/repo",)), gc=True))
    reg = Registry(v2=FsStorage.locate(root).v2, clock=LATER)
    reg.push("sandbox/x", image([BASE, _demo_files("old-2020")]), "1")  # its top layer
    result = _apply(root, plan)
    whys = dict(result.skipped)
    stayed = [p for p in whys if p.startswith("blobs/")]
    assert stayed, whys  # its blobs: the decision made again keeps them, or they are needed
    assert all(why in (UNSELECTED, "needed by sandbox/x:1") for why in whys.values())
    assert not (FsStorage.locate(root).v2 / "repositories/old/repo").exists()
    assert _broken(root) == []
    assert result.fingerprint_ok, result.changed


def _demo_files(tag: str) -> dict[str, bytes]:
    """A top layer as the sample registry makes it (demo.samples.demo_pushes)."""
    return {f"app/{tag}-0.txt": f"{tag} file 0\n".encode() * 64}


def test_a_re_pushed_approved_tag_is_not_removed(root: Path, tmp_path: Path) -> None:
    plan = _plan(root, tmp_path, selection(("team/app:v1", "team/app:v2")))
    reg = Registry(v2=FsStorage.locate(root).v2, clock=LATER)
    new = reg.push("team/app", image([BASE, {"v1-again": b"again"}]), "v1")
    result = _apply(root, plan)
    whys = dict(result.skipped)
    assert whys[tag_dir("team/app", "v1")].startswith("changed since the plan")
    v2 = FsStorage.locate(root).v2
    assert (v2 / tag_dir("team/app", "v1") / "current/link").read_text() == new
    assert not (v2 / tag_dir("team/app", "v2")).exists()
    assert _broken(root) == []


def test_an_untagged_push_nobody_approved_keeps_the_blobs_it_uses(
    root: Path, tmp_path: Path
) -> None:
    """The decision made again would remove the new untagged manifest too, but nobody
    approved that: it stays, and so does every approved blob it uses."""
    plan = _plan(root, tmp_path, attrs.evolve(selection((), ("*",)), gc=True))
    v2 = FsStorage.locate(root).v2
    reg = Registry(v2=v2, clock=LATER)
    digest = reg.push("sandbox/y", image([BASE, _demo_files("app-build0")]), "tmp")
    shutil.rmtree(v2 / tag_dir("sandbox/y", "tmp"))  # untagged now
    result = _apply(root, plan)
    whys = dict(result.skipped)
    assert any(p.startswith("blobs/") for p in whys), whys
    assert (v2 / revision_dir("sandbox/y", digest)).exists()
    assert _broken(root) == []


def test_nothing_left_to_apply_is_stale(root: Path, tmp_path: Path) -> None:
    plan = _plan(root, tmp_path, selection(("team/app:v1",)))
    reg = Registry(v2=FsStorage.locate(root).v2, clock=LATER)
    reg.push("team/app", image([BASE, {"v1-again": b"again"}]), "v1")
    with pytest.raises(StalePlanError, match=r"nothing of plan .* applies any more"):
        _apply(root, plan)
    assert apply.records(FsStorage.locate(root)) == []


def test_an_interrupted_apply_that_skips_finishes_with_the_same_skips(
    root: Path, tmp_path: Path
) -> None:
    plan = _plan(root, tmp_path, selection(("team/app:v1", "team/app:v2", "old/repo")))
    reg = Registry(v2=FsStorage.locate(root).v2, clock=LATER)
    reg.push("team/app", image([BASE, {"v1-again": b"again"}]), "v1")
    with pytest.raises(ApplyError):
        _apply(root, plan, opener=on_disk(FaultyDisk(errno.EIO, rename_at=2)))
    result = _apply(root, plan)
    assert result.resumed
    v2 = FsStorage.locate(root).v2
    skipped = {p for p, _ in result.skipped}
    assert tag_dir("team/app", "v1") in skipped
    assert all((v2 / p).exists() for p in skipped)
    targets = json.loads(plan.read_bytes())["targets"]
    assert all(not (v2 / t["path"]).exists() for t in targets if t["path"] not in skipped)
    assert _broken(root) == []


def test_what_stays_keeps_all_it_reaches(root: Path) -> None:
    """decide.needs: a staying tag keeps its index's revision, the index its children,
    a child its layers (blobs and layer links), one pass after another; what nothing
    staying reaches may go."""
    inv = location.read(FsStorage.locate(root))
    index_digest = inv.repositories["team/tool"].tags["1.0"].current
    assert index_digest is not None
    child = inv.manifests[index_digest].children[0]
    blob = inv.manifests[child].blobs[-1]
    removing = {
        revision_dir("team/tool", index_digest),
        revision_dir("team/tool", child),
        layer_dir("team/tool", blob),
        blob_dir(blob),
    }
    v1 = inv.repositories["team/app"].tags["v1"].current
    assert v1 is not None
    stray = revision_dir("team/app", v1)
    kept = needs.needed(inv, removing | {"blobs/sha256/00/" + "0" * 64})
    assert kept.keys() == removing
    assert kept[revision_dir("team/tool", index_digest)] == "team/tool:1.0"
    assert kept[blob_dir(blob)]  # by whichever staying image reaches it first
    assert needs.needed(inv, {stray, tag_dir("team/app", "v1")}) == {}


def test_the_command_names_what_it_skipped(root: Path, tmp_path: Path) -> None:
    """``apply`` says how many targets stayed and why in one line; ``--json`` lists each
    as {path, why}; ``--exact`` refuses the changed tree (exit 4), moving nothing."""
    plan = _plan(root, tmp_path, selection(("team/app:v1", "team/app:v2")))
    pub = write_pub(KEY, tmp_path / "k.pub")
    reg = Registry(v2=FsStorage.locate(root).v2, clock=LATER)
    reg.push("team/app", image([BASE, {"v1-again": b"again"}]), "v1")
    runner = CliRunner()
    exact = runner.invoke(cli, ["apply", str(plan), "--trust", str(pub), "--exact"])
    assert exact.exit_code == 4, exact.output
    assert apply.records(FsStorage.locate(root)) == []
    r = runner.invoke(cli, ["apply", str(plan), "--trust", str(pub), "--json"])
    assert r.exit_code == 0, r.output
    skipped = json.loads(r.stdout)["skipped"]
    assert {"path": tag_dir("team/app", "v1"), "why": CHANGED} in skipped
    rolled = runner.invoke(cli, ["rollback", json.loads(r.stdout)["apply_id"], "--root", str(root)])
    assert rolled.exit_code == 0, rolled.output
    again = runner.invoke(cli, ["apply", str(plan), "--trust", str(pub)])
    assert again.exit_code == 0, again.output
    [line] = [x for x in again.output.splitlines() if x.startswith("Skipped ")]
    assert "changed since the plan" in line


def test_the_printed_next_steps_run_as_printed(root: Path, tmp_path: Path) -> None:
    """``Undo with: regplan rollback ID --root ROOT`` from apply's output, run as printed
    (split as a shell would), undoes the apply (#32.6)."""
    plan = _plan(root, tmp_path, selection(("team/app:v1",)))
    pub = write_pub(KEY, tmp_path / "k.pub")
    r = CliRunner().invoke(cli, ["apply", str(plan), "--trust", str(pub), "--root", str(root)])
    assert r.exit_code == 0, r.output
    [undo] = [x for x in r.output.splitlines() if x.startswith("Undo with: ")]
    command = undo.removeprefix("Undo with: ").split("   ")[0]
    assert f"--root {root}" in command
    back = CliRunner().invoke(cli, shlex.split(command)[1:])
    assert back.exit_code == 0, back.output
    assert (FsStorage.locate(root).v2 / tag_dir("team/app", "v1")).exists()


def test_an_empty_folder_gone_or_filled_since_planning_is_skipped(
    root: Path, tmp_path: Path
) -> None:
    """A folder the plan prunes that a push filled, or that went: skipped and named, the
    rest applies (never an error half way)."""
    plan = _plan(root, tmp_path, selection((), ("*",), prune=True))
    folders = [
        t["path"] for t in json.loads(plan.read_bytes())["targets"] if t["kind"] == "empty_dir"
    ]
    assert len(folders) >= 2, folders
    v2 = FsStorage.locate(root).v2
    shutil.rmtree(v2 / folders[0])
    (v2 / folders[1] / "startedat").write_text("2026-12-07T00:00:00Z")
    result = _apply(root, plan)
    whys = dict(result.skipped)
    assert whys[folders[0]] == "gone since the plan"
    assert whys[folders[1]].startswith("no longer empty")
    assert (v2 / folders[1] / "startedat").exists()


def test_a_plan_whose_request_cannot_be_decided_again_moves_nothing(
    root: Path, tmp_path: Path
) -> None:
    """A (validly signed) plan whose recorded policy text is not a policy: exit 1, one
    line, nothing moved; ``--exact`` still applies it as planned (#32)."""
    plan = _plan(root, tmp_path, selection(("team/app:v1",)))
    raw = json.loads(plan.read_bytes())
    raw["request"]["policy"] = {"file": "p.yml", "sha256": "0" * 64, "text": "rules: [oops"}
    plan.write_text(json.dumps(sign_raw(raw)))
    pub = write_pub(KEY, tmp_path / "k.pub")
    before = docker_hashes(root)
    r = CliRunner().invoke(cli, ["apply", str(plan), "--trust", str(pub)])
    assert r.exit_code == 1, r.output
    [line] = r.output.splitlines()
    assert "cannot be decided again" in line and "--exact" in line
    assert docker_hashes(root) == before
    assert apply.records(FsStorage.locate(root)) == []
