"""--untagged '*' --gc and retention against the real registry.

The expected result comes from an independent mark-and-sweep written here with
os.walk and json, not from regplan's code; distribution's own
garbage-collect runs on the same tree for comparison.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from regplan.cli import cli
from regplan.demo.samples import BASE, image, index
from regplan.scan.layout import encoded_of
from tests.integration.realreg import Serve, all_refs


def _doc(v2: Path, digest: str) -> dict[str, Any]:
    hexd = digest.split(":")[1]
    loaded: dict[str, Any] = json.loads(
        (v2 / "blobs/sha256" / hexd[:2] / hexd / "data").read_bytes()
    )
    return loaded


def _listed(folder: Path, name: str) -> set[str]:
    """Entries of ``folder`` whose ``name`` file exists (a link that was not deleted)."""
    if not folder.exists():
        return set()
    return {e for e in os.listdir(folder) if (folder / e / name).exists()}


def _reach(v2: Path, tags: set[str], revs: set[str]) -> set[str]:
    """Tags' manifests, their index children, and referrers of anything reached."""
    reached = set(tags)
    while True:
        more = {c["digest"] for d in reached for c in _doc(v2, d).get("manifests", [])}
        more |= {d for d in revs if _doc(v2, d).get("subject", {}).get("digest") in reached}
        if more <= reached:
            return reached
        reached |= more


def independent_mark_sweep(v2: Path) -> tuple[set[tuple[str, str]], set[str]]:
    """(untagged revisions as (repo, digest), blobs nothing kept references)."""
    repos: dict[str, Path] = {}
    for dirpath, dirnames, _ in os.walk(v2 / "repositories"):
        if "_manifests" in dirnames:
            repos[str(Path(dirpath).relative_to(v2 / "repositories"))] = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith("_")]
    untagged: set[tuple[str, str]] = set()
    marked: set[str] = set()
    for name, repo in repos.items():
        revs = {f"sha256:{h}" for h in _listed(repo / "_manifests/revisions/sha256", "link")}
        tag_dir = repo / "_manifests/tags"
        tags = {(tag_dir / t / "current/link").read_text() for t in _listed(tag_dir, "current")}
        reached = _reach(v2, tags, revs)
        untagged |= {(name, d) for d in revs - reached}
        for d in revs & reached:
            m = _doc(v2, d)
            marked.add(d)
            if "config" in m:
                marked |= {m["config"]["digest"], *(x["digest"] for x in m.get("layers", []))}
    blobs = {
        f"sha256:{h}"
        for shard in os.listdir(v2 / "blobs/sha256")
        for h in _listed(v2 / "blobs/sha256" / shard, "data")
    }
    return untagged, blobs - marked


def plan_and_apply(root: Path, tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    key = tmp_path / "k.key"
    runner = CliRunner()
    if not key.exists():
        runner.invoke(cli, ["keygen", str(key)], catch_exceptions=False)
    out = tmp_path / f"plan-{len(list(tmp_path.glob('plan-*')))}.json"
    r = runner.invoke(
        cli,
        ["plan", "--root", str(root), "--key", str(key), "-o", str(out), *args],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    a = runner.invoke(
        cli, ["apply", str(out), "--trust", f"{key}.pub", "--json"], catch_exceptions=False
    )
    assert a.exit_code == 0, a.output
    return json.loads(out.read_text()), json.loads(a.stdout)["apply_id"]


def test_untagged_gc_matches_an_independent_mark_and_sweep(serve: Serve, tmp_path: Path) -> None:
    root = tmp_path / "root"
    reg = serve(root)
    shared = {"shared": b"layer used by two repositories"}
    for build in range(3):  # latest re-pushed three times
        reg.push("team/app", "latest", image([BASE, {"b": str(build).encode()}]))
    multi = index(
        [image([BASE, {"arch": b"amd"}]), image([shared, {"arch": b"arm"}], arch="arm64")]
    )
    reg.push("team/tool", "1.0", multi)
    doomed = image([shared, {"d": b"1"}])
    reg.push("api/del", "doomed", doomed)
    reg.push("api/del", "stays", image([shared, {"s": b"1"}]))
    reg.delete_manifest("api/del", doomed.digest)
    reg.stop()
    v2 = root / "docker/registry/v2"
    untagged, unreferenced = independent_mark_sweep(v2)
    assert len(untagged) == 2 and len(unreferenced) >= 3

    gc_out = reg.garbage_collect("--dry-run", "--delete-untagged")
    their_manifests = set(
        re.findall(r"manifest eligible for deletion: \{?(?:\S+ )?(sha256:[0-9a-f]{64})", gc_out)
    )
    children = {str(c.digest) for c in multi.children}
    if reg.version == "2.8":
        assert children <= their_manifests, "distribution 2.8 selects the index children"
    else:  # v3 marks index children (distribution#4285): it agrees with the mark here
        assert their_manifests == {d for _, d in untagged}, gc_out[-2000:]

    before = all_refs(root)
    plan, _ = plan_and_apply(root, tmp_path, "--untagged", "*", "--gc")
    targets = plan["targets"]
    assert isinstance(targets, list)
    revs = {
        (
            t["path"].split("/_manifests/")[0].removeprefix("repositories/"),
            "sha256:" + t["path"].rsplit("/", 1)[1],
        )
        for t in targets
        if t["kind"] == "revision"
    }
    blobs = {"sha256:" + t["path"].rsplit("/", 1)[1] for t in targets if t["kind"] == "blob"}
    assert revs == untagged
    assert blobs == unreferenced
    kept = {k["path"] for k in plan["kept"]}
    for c in multi.children:
        assert f"repositories/team/tool/_manifests/revisions/sha256/{encoded_of(c.digest)}" in kept
        assert str(c.digest) not in {d for _, d in revs}

    reg.start()
    after = all_refs(root)
    assert all(reg.pull(ref) for ref in sorted(after))
    assert not any(reg.pull(ref) for ref in sorted(before - after))
    assert reg.pull("team/tool:1.0") and reg.pull("api/del:stays")


def test_keep_last_3_keep_latest_on_ten_tags(serve: Serve, tmp_path: Path) -> None:
    root = tmp_path / "root"
    reg = serve(root)
    names = [f"t{i}" for i in range(9)] + ["latest"]
    for i, name in enumerate(names):
        reg.push("ret/app", name, image([BASE, {"n": str(i).encode()}]))
        time.sleep(0.01)  # distinct push times (current/link mtimes)
    reg.push("other/app", "x", image([BASE]))
    reg.stop()
    plan, _ = plan_and_apply(
        root, tmp_path, "--image", "ret/app", "--keep-last", "3", "--keep", "latest"
    )
    targets = plan["targets"]
    assert isinstance(targets, list)
    removed = {t["path"].rsplit("/", 1)[1] for t in targets if t["kind"] == "tag"}
    assert removed == set(names[:7])
    reg.start()
    for name in names[7:]:
        assert reg.pull(f"ret/app:{name}")
    for name in names[:7]:
        assert not reg.pull(f"ret/app:{name}")
    assert reg.pull("other/app:x")
