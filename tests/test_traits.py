"""What the registry's version and configuration make of a tree (#23): v3 cannot serve
schema-1 manifests; v3 can accept indexes whose children are absent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from regplan.cli import cli
from regplan.demo.samples import Blob, Index, Registry, demo_pushes
from regplan.scan.layout import revision_dir
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import write_keys


def plan(tmp_path: Path, *args: str) -> dict[str, str]:
    """The problems of ``regplan plan --gc ARGS`` (ARGS name the storage): path -> code."""
    key, _ = write_keys(tmp_path)
    out = tmp_path / "p.json"
    r = CliRunner().invoke(cli, ["plan", "--key", str(key), "-o", str(out), "-q", "--gc", *args])
    assert r.exit_code == 0, r.output
    return {p["path"]: p["code"] for p in json.loads(out.read_bytes())["problems"]}


def test_a_schema1_tag_is_a_problem_on_v3_only(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = Registry.create(root)
    layer = Blob(b"a layer", "application/octet-stream")
    reg.blob(layer)
    doc = {"schemaVersion": 1, "name": "old/app", "fsLayers": [{"blobSum": str(layer.digest)}]}
    manifest = Blob(
        json.dumps(doc).encode(), "application/vnd.docker.distribution.manifest.v1+prettyjws"
    )
    reg.blob(manifest)
    link = reg.v2 / revision_dir("old/app", manifest.digest) / "link"
    link.parent.mkdir(parents=True)
    link.write_text(str(manifest.digest))
    reg.tag("old/app", "2017", manifest.digest)
    current = "repositories/old/app/_manifests/tags/2017/current/link"
    on = ("--root", str(root))
    assert current not in plan(tmp_path, *on)
    assert plan(tmp_path, *on, "--registry-version", "2").get(current) is None
    assert plan(tmp_path, *on, "--registry-version", "3")[current] == "schema1-on-v3"


def test_an_absent_index_child_is_expected_where_the_registry_accepts_it(
    tmp_path: Path,
) -> None:
    """v3's ``validation.manifests.indexes.platforms: none`` (distribution#3536)."""
    root = tmp_path / "registry"
    reg = Registry.create(root)
    tool = next(i for r, t, i in demo_pushes().pushes if isinstance(i, Index))
    reg.push("team/tool", tool, "1.0")
    absent = tool.children[0].digest
    shutil.rmtree(FsStorage.locate(root).v2 / revision_dir("team/tool", absent))
    index = revision_dir("team/tool", tool.digest)
    assert plan(tmp_path, "--root", str(root))[index] == "missing-child"
    for platforms, code in (("all", "missing-child"), ("none", "absent-child")):
        config = tmp_path / f"{platforms}.yml"
        config.write_text(
            f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {root}}}}}\n"
            f"validation: {{manifests: {{indexes: {{platforms: {platforms}}}}}}}\n"
        )
        assert plan(tmp_path, "--config", str(config))[index] == code, platforms
