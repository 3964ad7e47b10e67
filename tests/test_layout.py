from __future__ import annotations

from pathlib import Path

import pytest

from regplan.errors import StorageError
from regplan.scan.layout import parse_digest, part_of, split_repo
from regplan.storage.fs.fsstorage import FsStorage

HEX = "a" * 64


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{HEX}",
        "sha512:" + "b" * 128,
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
    ],
)
def test_digest_parses_valid(text: str) -> None:
    """Algorithm and encoding come from the text, not a hard-coded sha256."""
    assert str(parse_digest(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        f"sha256:{HEX[:-1]}",
        f"SHA256:{HEX}",
        f"sha256:{HEX.upper()}",
        f"sha256:{HEX}\n",
        ":abc",
        "foo:abc\n",  # a trailing newline: ``$`` matched before it
        "foo\n:abc",
    ],
)
def test_digest_rejects_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="digest"):
        parse_digest(text)


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("repositories/a/_manifests/tags/v1", ("a", "_manifests/tags/v1")),
        ("repositories/a/b/c/_layers/sha256/x", ("a/b/c", "_layers/sha256/x")),
        ("repositories/a/_manifests/tags/_under/current", ("a", "_manifests/tags/_under/current")),
        ("repositories/a/b", None),
        ("repositories/_x", None),
        ("blobs/sha256/aa", None),
    ],
)
def test_split_repo(rel: str, expected: tuple[str, str] | None) -> None:
    """The first component starting with '_' ends the repository name."""
    assert split_repo(rel) == expected


@pytest.mark.parametrize(
    ("rel", "part"),
    [
        ("repositories/team/app/_manifests/tags/v1/current/link", "repositories/team/app"),
        ("repositories/team/app/cache/_layers", "repositories/team/app/cache"),
        ("repositories/team", "repositories/team"),
        (f"blobs/sha256/aa/{HEX}/data", "blobs/sha256/aa"),
        ("blobs", "blobs"),
        ("repositories", "repositories"),
    ],
)
def test_part_of(rel: str, part: str) -> None:
    assert part_of(rel) == part


def test_locate_accepts_rootdirectory_and_v2(tmp_path: Path) -> None:
    v2 = tmp_path / "docker" / "registry" / "v2"
    v2.mkdir(parents=True)
    assert FsStorage.locate(tmp_path) == FsStorage(root=tmp_path, v2=v2)
    assert FsStorage.locate(v2) == FsStorage(root=tmp_path, v2=v2)


def test_locate_refuses_other_folders(tmp_path: Path) -> None:
    """The message names what was expected."""
    with pytest.raises(StorageError, match="not registry storage: expected docker/registry/v2"):
        FsStorage.locate(tmp_path)
    with pytest.raises(StorageError, match="no such directory"):
        FsStorage.locate(tmp_path / "missing")
