"""The object-store scan's listings (regplan/storage/objects/objscan.py): where blob shards
hold few keys, 16 shards are listed at a time (``blobs/sha256/a``), else one at a time;
the scan is the filesystem scan of the same keys either way, a loose file beside the
shards included."""

from __future__ import annotations

from pathlib import Path

import pytest

from regplan.demo.samples import build_scale
from regplan.storage.fs import fsscan
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.objects import objscan
from tests.buckets import Counting, InMemory, mirror


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale")
    build_scale(root, repos=4, tags=4, pushes=2)
    return root


def _listings(reg: InMemory, tmp_path: Path) -> tuple[int, int]:
    """(blob listings of one scan, blob shards), and the scan is the filesystem's."""
    counting = Counting(reg.bucket)
    listed: list[str] = []
    inner = counting.request

    def request(kind: str, key: str, call):  # type: ignore[no-untyped-def]
        if kind == "objects" and "/blobs/" in key:
            listed.append(key)
        return inner(kind, key, call)

    counting.request = request  # type: ignore[method-assign]
    inv = objscan.scan(reg.through(counting), cache=tmp_path / "c")
    fs = fsscan.scan(FsStorage.locate(mirror(reg.bucket, tmp_path / "m")))
    assert inv.tree.digest == fs.tree.digest
    assert inv.blobs == fs.blobs and inv.manifests == fs.manifests
    assert inv.problems == fs.problems
    shards = reg.bucket.folders(reg.storage.v2_prefix + "blobs/sha256/")[0]
    return len(listed), len(shards)


def test_shards_of_few_keys_are_listed_16_at_a_time(tree: Path, tmp_path: Path) -> None:
    reg = InMemory.of("s3", tmp_path, tree)
    reg.bucket.put(reg.storage.key("docker/registry/v2/blobs/sha256/0loose"), b"beside")
    listings, shards = _listings(reg, tmp_path)
    assert shards > 50
    assert listings == 1 + 16  # the first page, then a listing per first digit


def test_shards_of_many_keys_are_listed_one_at_a_time(tree: Path, tmp_path: Path) -> None:
    """1,000 keys in the first shard: the first page spans fewer than 4."""
    reg = InMemory.of("s3", tmp_path, tree)
    for n in range(1000):
        rel = f"docker/registry/v2/blobs/sha256/00/00{n:062x}/data"
        reg.bucket.put(reg.storage.key(rel), b"x")
    listings, shards = _listings(reg, tmp_path)
    assert listings == 1 + shards
