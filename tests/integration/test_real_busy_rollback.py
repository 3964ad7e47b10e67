"""Rollback on a real registry (2.8 and 3.1) pushed to since the apply, and ``rollback
--only`` (#32): skopeo pushes between apply and rollback; skopeo pulls prove the result.

The plan removes ``team/app:v1``, ``old/repo:2020`` and every untagged manifest (the
first ``team/app:latest`` builds among them) with their layers. Every command runs
through regplan's command line with the registry stopped, probed at its URL."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import attrs
from click.testing import Result

from regplan.demo.samples import Blob, DemoImages, Image
from regplan.plans.plan import TargetKind
from tests.helpers import KEY, docker_hashes, selection, write_plan_file, write_pub
from tests.integration.realreg import SKOPEO, RealRegistry, Serve, all_refs, copy_of, run

V1 = "repositories/team/app/_manifests/tags/v1"
SELECTION = selection(("team/app:v1", "old/repo:2020"), ("*",), prune=True)


@attrs.frozen
class Applied:
    """A copy of the pushed tree, its registry (stopped), and the plan applied to it."""

    root: Path
    reg: RealRegistry
    apply_id: str
    before: set[str]
    """Every tag and revision before the apply."""
    gone: set[str]
    """What the apply removed."""
    original: dict[str, str]
    """docker_hashes before the apply."""
    times: dict[str, tuple[int, int]]
    """modes_and_times before the apply."""
    targets: tuple[tuple[TargetKind, str], ...]

    def probe(self) -> list[str]:
        return ["--root", str(self.root), "--registry-url", self.reg.url, "--registry-stopped"]

    def rollback(self, *more: str) -> Result:
        return run("rollback", self.apply_id, *self.probe(), *more)

    def state(self) -> tuple[str, int]:
        [record] = json.loads(run("history", "--root", str(self.root), "--json").stdout)
        return record["state"], record["superseded"]


def applied(pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path) -> Applied:
    """The plan applied (the registry stopped, as the safe procedure says); the registry
    is left stopped."""
    root = copy_of(pushed, tmp_path)
    reg = serve(root)
    before, original, times = all_refs(root), docker_hashes(root), modes_and_times(root)
    plan_path = tmp_path / "p.json"
    plan = write_plan_file(root, SELECTION, plan_path)
    pub = write_pub(KEY, tmp_path / "k.pub")
    reg.stop()
    r = run("apply", str(plan_path), "--trust", str(pub), "--json",
            "--registry-url", reg.url, "--registry-stopped")  # fmt: skip
    assert r.exit_code == 0, r.output
    gone = before - all_refs(root)
    assert {"team/app:v1", "old/repo:2020"} <= gone
    targets = tuple((t.kind, t.path) for t in plan.targets)
    apply_id = json.loads(r.stdout)["apply_id"]
    return Applied(root, reg, apply_id, before, gone, original, times, targets)


def rebuilt(images: DemoImages) -> Image:
    """team/app's first ``latest`` build (untagged, removed by the plan with its config
    and layer) under a new manifest: pushed as ``team/app:v1``, it brings back blobs and
    layer links the apply quarantined, byte for byte, under new content for the tag."""
    first = next(i for r, t, i in images.pushes if (r, t) == ("team/app", "latest"))
    assert isinstance(first, Image)
    doc = json.loads(first.manifest.data)
    doc["annotations"] = {"org.opencontainers.image.revision": "rebuilt"}
    return attrs.evolve(first, manifest=Blob(json.dumps(doc).encode(), first.manifest.media_type))


def modes_and_times(root: Path) -> dict[str, tuple[int, int]]:
    """Every file's and folder's mode under ``root/docker``, and each file's mtime (a
    tag's push time is its link's); a folder's mtime moves with what it holds."""
    out = {}
    for path in sorted((root / "docker").rglob("*")):
        st = path.lstat()
        out[path.relative_to(root).as_posix()] = (
            st.st_mode,
            0 if path.is_dir() else st.st_mtime_ns,
        )
    return out


def served_digest(reg: RealRegistry, ref: str) -> str:
    """The digest of the manifest ``ref`` names, as skopeo reads it from the registry."""
    done = subprocess.run(
        [SKOPEO, "inspect", "--raw", "--tls-verify=false", f"docker://{reg.host}/{ref}"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return "sha256:" + hashlib.sha256(done.stdout).hexdigest()


def test_rollback_after_a_re_push_keeps_the_new_tag_and_restores_the_rest(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """``team/app:v1`` pushed again (new content over layers the apply removed) between
    apply and rollback: rollback exits 0 and names the tag as superseded; the blobs and
    layer links the push wrote again count as restored; the tag pulls its new content,
    and every other image the apply removed pulls again; purge then frees the tag's
    apply-time version, and all of it still pulls."""
    a = applied(pushed, serve, tmp_path)
    new = rebuilt(pushed[1])
    removed = {p.rsplit("/", 1)[1] for k, p in a.targets if k == TargetKind.BLOB}
    reused = {str(b.digest).removeprefix("sha256:") for b in new.blobs} & removed
    assert len(reused) == 2  # its config and own layer (the base layer stayed)
    a.reg.start()
    a.reg.push("team/app", "v1", new)  # CI pushes the tag again, with other content
    a.reg.stop()

    r = a.rollback("--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["superseded"] == [V1]
    assert result["same"] == 2 * len(reused)  # each blob and its layer link in team/app
    assert a.state() == ("rolled-back", 1)
    a.reg.start()
    assert served_digest(a.reg, "team/app:v1") == str(new.digest)
    assert a.reg.pull("team/app:v1")
    assert a.reg.not_pulled(a.before - {"team/app:v1"}) == []
    refs = a.before | {f"team/app@{new.digest}"}
    assert all_refs(a.root) == refs
    a.reg.stop()

    r = run("purge", a.apply_id, "--root", str(a.root))  # frees the tag's old version
    assert r.exit_code == 0, r.output
    assert not (a.root / "regplan-state" / "quarantine" / a.apply_id).exists()
    assert a.state() == ("purged", 1)
    a.reg.start()
    assert served_digest(a.reg, "team/app:v1") == str(new.digest)
    assert a.reg.not_pulled(refs) == []


def test_rollback_only_one_tag_then_the_rest_is_byte_for_byte(
    pushed: tuple[Path, DemoImages], serve: Serve, tmp_path: Path
) -> None:
    """``rollback --only team/app:v1``: that image pulls (by tag and by digest), nothing
    else the apply removed does, history says partly-rolled-back; ``--only
    team/app@<digest prefix>`` then brings back an untagged build whose blobs went with
    their pruned folders; the full rollback then leaves every file as before the apply
    (its bytes, mode and time; every folder's mode) and every image pulls."""
    a = applied(pushed, serve, tmp_path)
    v1 = next(str(i.digest) for r, t, i in pushed[1].pushes if (r, t) == ("team/app", "v1"))
    build = next(str(i.digest) for r, t, i in pushed[1].pushes if (r, t) == ("team/app", "latest"))
    mine = {"team/app:v1", f"team/app@{v1}"}
    assert mine | {f"team/app@{build}"} <= a.gone

    r = a.rollback("--only", "team/app:v1")
    assert r.exit_code == 0, r.output
    assert "in part (--only)" in r.output
    assert a.state() == ("partly-rolled-back", 0)
    assert all_refs(a.root) == (a.before - a.gone) | mine
    a.reg.start()
    assert a.reg.not_pulled(mine) == []
    assert a.reg.not_pulled(a.gone - mine) == sorted(a.gone - mine)
    a.reg.stop()

    r = a.rollback("--only", f"team/app@{build[:19]}")
    assert r.exit_code == 0, r.output
    mine.add(f"team/app@{build}")
    assert a.state() == ("partly-rolled-back", 0)
    assert all_refs(a.root) == (a.before - a.gone) | mine
    a.reg.start()
    assert a.reg.not_pulled(a.gone) == sorted(a.gone - mine)
    a.reg.stop()

    r = a.rollback()
    assert r.exit_code == 0, r.output
    assert a.state() == ("rolled-back", 0)
    assert docker_hashes(a.root) == a.original
    assert modes_and_times(a.root) == a.times
    a.reg.start()
    assert a.reg.not_pulled(a.before) == []
