"""Finding the storage from the registry's own config.yml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.errors import StorageError
from regplan.storage.config import ENV_ROOT, rootdirectory


def write(tmp_path: Path, text: str, name: str = "config.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


FS = """version: 0.1
storage:
  filesystem:
    rootdirectory: /srv/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
"""


def test_filesystem_rootdirectory(tmp_path: Path) -> None:
    assert rootdirectory(write(tmp_path, FS), {}) == Path("/srv/registry")


def test_environment_overrides_like_the_registry(tmp_path: Path) -> None:
    assert rootdirectory(write(tmp_path, FS), {ENV_ROOT: "/elsewhere"}) == Path("/elsewhere")


def test_default_rootdirectory(tmp_path: Path) -> None:
    cfg = write(tmp_path, "version: 0.1\nstorage:\n  filesystem: {}\n")
    assert rootdirectory(cfg, {}) == Path("/var/lib/registry")
    cfg = write(tmp_path, "version: 0.1\nstorage:\n  filesystem:\n")
    assert rootdirectory(cfg, {}) == Path("/var/lib/registry")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("storage:\n  s3:\n    region: x\n", "storage.s3.bucket is not set"),
        ("storage:\n  s3: [b]\n", "storage.s3 is not a mapping"),
        (
            "storage:\n  s3: {bucket: b}\n  filesystem: {}\n",
            "filesystem, s3 storage driver",
        ),
        ("storage:\n  swift: {container: b}\n", "uses the swift storage driver"),
        ("storage: [unclosed\n", "is not valid YAML (line 2)"),
        ("version: 0.1\n", "has no storage section"),
        ("just text", "has no storage section"),
        ("storage:\n  filesystem:\n    rootdirectory: 5\n", "rootdirectory is not a path"),
    ],
)
def test_bad_configs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        rootdirectory(write(tmp_path, text), {})


def test_cli_reads_config(demo_root: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path, f"storage:\n  filesystem:\n    rootdirectory: {demo_root}\n")
    runner = CliRunner()
    r = runner.invoke(cli, ["history", "--config", str(cfg)], catch_exceptions=False)
    assert r.exit_code == 0 and r.output == "No applies recorded.\n"
    swift = write(tmp_path, "storage:\n  swift: {container: b}\n", "swift.yml")
    r = runner.invoke(cli, ["history", "--config", str(swift)])
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and "swift storage driver" in r.output
    assert r.output.count("\n") == 1
    r = runner.invoke(
        cli, ["history"], env={"REGISTRY_DATA_DIR": "", "REGISTRY_CONFIGURATION_PATH": str(cfg)}
    )
    assert r.exit_code == 0, r.output
