"""The Bucket seam's reads and writes, the same on every object store (S3, Azure Blob,
GCS): a limited read, an empty object (a ranged read of one is refused by Azure and
GCS), a missing one, and the conditional writes the lock is made of."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.demo.samples import build_demo
from regplan.storage.objects.bucket import Exists, ObjectStorage
from tests import azserver, gcsserver, s3server
from tests.helpers import write_keys

SERVERS = {"s3": ("s3server", s3server), "azure": ("azurite", azserver),
           "gcs": ("gcs_emulator", gcsserver)}  # fmt: skip


@pytest.fixture(params=sorted(SERVERS))
def cloud(request: pytest.FixtureRequest) -> tuple[ObjectStorage, object]:
    """A new container on one store, and that store's test server."""
    server = request.getfixturevalue(SERVERS[request.param][0])
    found: ObjectStorage = server.storage()
    return found, server


@pytest.fixture
def storage(cloud: tuple[ObjectStorage, object]) -> ObjectStorage:
    return cloud[0]


def test_reads_whole_limited_empty_and_missing(storage: ObjectStorage) -> None:
    b = storage.open()
    b.put(storage.key("a"), b"hello")
    b.put(storage.key("empty"), b"")
    assert b.get(storage.key("a")) == b"hello"
    assert b.get(storage.key("a"), 2) == b"he"
    assert b.get(storage.key("empty"), 100) == b"" == b.get(storage.key("empty"))
    out = io.BytesIO()
    etag = b.get_to(storage.key("empty"), out, 10)
    assert out.getvalue() == b"" and etag
    b.put(storage.key("empty"), b"now", if_match=etag)  # the etag names that version
    with pytest.raises(FileNotFoundError):
        b.get(storage.key("missing"), 10)
    with pytest.raises(FileNotFoundError):
        b.get_to(storage.key("missing"), io.BytesIO())
    listed = {o.rel: o for o in b.objects(storage.key(""))}
    assert listed["a"].size == 5 and listed["a"].md5() == "5d41402abc4b2a76b9719d911017c592"
    names, files = b.folders(storage.key(""))
    assert names == [] and sorted(o.rel for o in files) == ["a", "empty"]


def test_conditional_writes(storage: ObjectStorage) -> None:
    b = storage.open()
    key = storage.key("lock")
    first = b.put(key, b"1", new=True)
    with pytest.raises(Exists):
        b.put(key, b"2", new=True)
    second = b.put(key, b"2", if_match=first)
    with pytest.raises(Exists):
        b.put(key, b"3", if_match=first)  # a version since replaced
    with pytest.raises(Exists):
        b.delete_one(key, if_match=first)
    b.delete_one(key, if_match=second)
    with pytest.raises(FileNotFoundError):
        b.get(key)
    with pytest.raises(Exists):
        b.delete_one(key, if_match=second)  # gone: not the one named
    b.delete([key, storage.key("never")])  # a missing key is no error


def problems(root: str, key: Path, out: Path) -> list[tuple[str, str]]:
    r = CliRunner().invoke(cli, ["plan", "--root", root, "--key", str(key), "-o", str(out),
                                 "-q", "--gc"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return sorted((p["code"], p["path"]) for p in json.loads(out.read_bytes())["problems"])


def test_an_empty_link_is_reported_as_on_a_filesystem(
    cloud: tuple[ObjectStorage, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag whose current/link is empty (a disk that lost it): the plan on the store
    reports what the plan on the filesystem reports, and does not fail."""
    storage, server = cloud
    fs = tmp_path / "fs"
    build_demo(fs)
    link = next(fs.rglob("_manifests/tags/*/current/link"))
    link.write_bytes(b"")
    key, _ = write_keys(tmp_path)
    expected = problems(str(fs), key, tmp_path / "fs.json")
    assert any(path.endswith("current/link") for _, path in expected)
    helpers = SERVERS[storage.record()["driver"]][1]
    helpers.upload_tree(fs, storage)
    for k, v in server.env().items():  # type: ignore[attr-defined]
        monkeypatch.setenv(k, v)
    assert problems(storage.root, key, tmp_path / "bucket.json") == expected
