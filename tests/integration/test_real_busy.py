"""An approved plan applied after pushes to the real registry (#32), 2.8 and 3.1.

Each test plans on the demo's images (pushed through skopeo), pushes through skopeo to
the running registry (never by writing files), stops it, applies with the registry
declared stopped, starts it again, and proves what it says by pulls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from regplan import workflow
from regplan.changes.recheck import CHANGED, UNSELECTED
from regplan.decide.flags import Retention
from regplan.decide.selection import Selection
from regplan.demo.samples import BASE, DemoImages, Image, image
from regplan.plans.plan import Plan
from regplan.scan.layout import blob_dir, repo_dir, tag_dir
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import KEY, broken_images, docker_hashes, selection, write_pub
from tests.integration.realreg import RealRegistry, Serve, all_refs, copy_of, run

V2 = "registry/v2/"
"""Where docker_hashes names the tree's paths (relative to ``root/docker``)."""


def plan_of(root: Path, tmp_path: Path, sel: Selection) -> tuple[Path, Plan]:
    """The plan of ``sel``, signed and written, made now: after every push so far (a push
    later than the plan's time has no age, and keep-last keeps it), in whole seconds
    (as the plan records its time)."""
    path = tmp_path / "p.json"
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    storage = FsStorage.locate(root)
    argv = ["regplan", "plan", "--root", str(root)]
    with workflow.make_plan(
        storage=storage, selection=sel, argv=argv, key=KEY, signer="test-planner", now=when
    ) as draft:
        plan = workflow.whole(draft)
    workflow.write_plan(plan, path)
    return path, plan


def apply_stopped(reg: RealRegistry, plan: Path, tmp_path: Path) -> dict[str, Any]:
    """The safe procedure: stop the registry, apply it (``--json``) saying so, start it."""
    pub = write_pub(KEY, tmp_path / "k.pub")
    reg.stop()
    probe = ["--registry-url", reg.url, "--registry-stopped"]
    r = run("apply", str(plan), "--trust", str(pub), "--json", *probe)
    reg.start()
    assert r.exit_code == 0, r.output
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def under(path: str, tops: set[str]) -> bool:
    """``path`` (docker_hashes', a folder ending in ``/``) is one of ``tops`` or below."""
    parts = path.removeprefix(V2).rstrip("/").split("/")
    return any("/".join(parts[:i]) in tops for i in range(1, len(parts) + 1))


def all_pull(reg: RealRegistry, root: Path) -> list[str]:
    """Every tag and revision the storage holds that does not pull (empty: all pull)."""
    return [ref for ref in sorted(all_refs(root)) if not reg.pull(ref)]


def current(root: Path, repo: str, tag: str) -> str:
    """The manifest a tag names in the storage."""
    link = FsStorage.locate(root).v2 / tag_dir(repo, tag) / "current/link"
    return link.read_text()


def own(files: str) -> Image:
    """A new image on the demo's base layer."""
    return image([BASE, {f"app/{files}.txt": f"{files}\n".encode() * 64}])


def test_unrelated_pushes_leave_the_approved_removals_to_apply(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """``--image team/app --keep-last 2`` approves team/app:v1; then a new repository and
    a newer tag in team/app are pushed. The apply moves exactly the approved targets,
    skips nothing, and v2 (no longer among the last two), the newer tag and the new
    repository pull."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    sel = attrs.evolve(selection(("team/app",)), retention=Retention(keep_last=2))
    plan, planned = plan_of(root, tmp_path, sel)
    targets = {t.path for t in planned.targets}
    assert tag_dir("team/app", "v1") in targets
    assert not any(t.startswith(tag_dir("team/app", "v2")) for t in targets)
    reg.push("sandbox/new", "1", own("sandbox-new"))
    reg.push("team/app", "v3", own("app-v3"))
    before = docker_hashes(root)
    result = apply_stopped(reg, plan, tmp_path)
    assert result["skipped"] == []
    assert docker_hashes(root) == {p: h for p, h in before.items() if not under(p, targets)}
    for ref in ("team/app:v3", "team/app:v2", "team/app:latest", "sandbox/new:1"):
        assert reg.pull(ref), ref
    assert not reg.pull("team/app:v1")
    assert all_pull(reg, root) == []
    assert broken_images(FsStorage.locate(root).v2) == []


def test_a_push_that_reuses_a_removed_blob_keeps_it(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """``--image old/repo --gc`` approves old/repo:2020's own layer blob; a new image in
    another repository is pushed with that layer. The blob stays (skipped, named), the
    rest of old/repo goes, and the new image pulls."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    old = pushed[1].tagged()["old/repo:2020"]
    assert isinstance(old, Image)
    top = old.layers[-1]
    plan, planned = plan_of(root, tmp_path, attrs.evolve(selection(("old/repo",)), gc=True))
    assert blob_dir(top.digest) in {t.path for t in planned.targets}
    files = {"app/old-2020-0.txt": b"old-2020 file 0\n" * 64}  # the demo's, as its top layer
    reuse = image([BASE, files, {"app/more.txt": b"more\n"}])
    assert top.digest in {b.digest for b in reuse.layers}
    reg.push("sandbox/reuse", "1", reuse)
    result = apply_stopped(reg, plan, tmp_path)
    whys = {s["path"]: s["why"] for s in result["skipped"]}
    assert whys.get(blob_dir(top.digest)) in (UNSELECTED, "needed by sandbox/reuse:1"), whys
    v2 = FsStorage.locate(root).v2
    assert (v2 / blob_dir(top.digest) / "data").is_file()
    assert not (v2 / repo_dir("old/repo")).exists()
    assert reg.pull("sandbox/reuse:1")
    assert not reg.pull("old/repo:2020")
    assert all_pull(reg, root) == []
    assert broken_images(v2) == []


@pytest.mark.parametrize("content", ["new", "same"])
def test_a_re_pushed_approved_tag_is_not_removed(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path, content: str
) -> None:
    """team/app:v1 and v2 approved; v1 is pushed again, with new content or the same
    (later). v1 stays (changed since the plan) and pulls what was pushed; v2 goes."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    plan, _ = plan_of(root, tmp_path, selection(("team/app:v1", "team/app:v2")))
    again = own("app-v1-again") if content == "new" else pushed[1].tagged()["team/app:v1"]
    reg.push("team/app", "v1", again)
    result = apply_stopped(reg, plan, tmp_path)
    assert {"path": tag_dir("team/app", "v1"), "why": CHANGED} in result["skipped"]
    assert current(root, "team/app", "v1") == str(again.digest)
    assert reg.pull("team/app:v1") and reg.fetch("team/app", str(again.digest))
    assert not reg.pull("team/app:v2")
    assert all_pull(reg, root) == []
    assert broken_images(FsStorage.locate(root).v2) == []
