"""The Bucket seam's primitives, the same tests on every real store (S3 on moto, Azure
Blob on Azurite, GCS on its emulator) and on the memory bucket in each store's flavour
(as distribution's ``driver/testsuites`` run on every driver): reads whole, limited,
empty and missing; versions and content hashes, and what a copy keeps of them;
conditional writes and deletes; listings in key order, past a page of 1,000 keys, with
and without a delimiter. What passes here on both is what lets the transaction's
tests (contract, lock, crash) run on the memory bucket alone."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.demo.samples import build_demo
from regplan.errors import StorageError
from regplan.storage.objects.bucket import Bucket, Exists, ObjectStorage
from regplan.storage.objects.memory import MemoryBucket
from tests import azserver, gcsserver, s3server
from tests.buckets import Counting, Crashing, Faulty, Killed
from tests.helpers import write_keys

SERVERS = {"s3": ("s3server", s3server), "azure": ("azurite", azserver),
           "gcs": ("gcs_emulator", gcsserver)}  # fmt: skip
STORES = [*sorted(SERVERS), *(f"memory-{d}" for d in sorted(SERVERS))]
HELLO_MD5 = "5d41402abc4b2a76b9719d911017c592"


@pytest.fixture(params=STORES)
def bucket(request: pytest.FixtureRequest) -> Bucket:
    """A new, empty container on one store (a real one, or the memory bucket)."""
    name: str = request.param
    if name.startswith("memory-"):
        return MemoryBucket(name.removeprefix("memory-"))
    found: ObjectStorage = request.getfixturevalue(SERVERS[name][0]).storage()
    return found.open()


def driver(b: Bucket) -> str:
    return b.storage.record()["driver"]


def test_reads_whole_limited_empty_and_missing(bucket: Bucket) -> None:
    b, key = bucket, bucket.storage.key
    b.put(key("a"), b"hello")
    b.put(key("empty"), b"")
    assert b.get(key("a")) == b"hello"
    assert b.get(key("a"), 2) == b"he"
    assert b.get(key("empty"), 100) == b"" == b.get(key("empty"))
    out = io.BytesIO()
    etag = b.get_to(key("empty"), out, 10)
    assert out.getvalue() == b"" and etag
    b.put(key("empty"), b"now", if_match=etag)  # the etag names that version
    with pytest.raises(FileNotFoundError):
        b.get(key("missing"), 10)
    with pytest.raises(FileNotFoundError):
        b.get_to(key("missing"), io.BytesIO())
    listed = {o.rel: o for o in b.objects(key(""))}
    assert listed["a"].size == 5 and listed["a"].md5() == HELLO_MD5
    names, files = b.folders(key(""))
    assert names == [] and sorted(o.rel for o in files) == ["a", "empty"]


def test_conditional_writes(bucket: Bucket) -> None:
    b, key = bucket, bucket.storage.key("lock")
    with pytest.raises(Exists):
        b.put(key, b"0", if_match="1")  # no object: not the one named
    first = b.put(key, b"1", new=True)
    with pytest.raises(Exists):
        b.put(key, b"2", new=True)
    second = b.put(key, b"2", if_match=first)
    with pytest.raises(Exists):
        b.put(key, b"3", if_match=first)  # a version since replaced
    with pytest.raises(Exists):
        b.delete_one(key, if_match=first)
    assert b.get(key) == b"2"
    b.delete_one(key, if_match=second)
    with pytest.raises(FileNotFoundError):
        b.get(key)
    with pytest.raises(Exists):
        b.delete_one(key, if_match=second)  # gone: not the one named
    b.delete_one(key)  # unconditional: a missing key is no error
    assert b.delete([key, b.storage.key("never")]) == 2  # nor in a batch


def test_every_write_is_a_new_version_and_the_etag_names_it(bucket: Bucket) -> None:
    """A write of other bytes always changes the etag; the same bytes again do on Azure
    and GCS (a version) and not on S3 (its ETag is their MD5). A read and a listing give
    the etag the write returned."""
    b, key = bucket, bucket.storage.key("k")
    one = b.put(key, b"one")
    two = b.put(key, b"two")
    again = b.put(key, b"two")
    assert one != two
    assert (again == two) == (driver(b) == "s3")
    assert b.get_to(key, io.BytesIO()) == again
    [listed] = b.objects(key)
    assert listed.etag == again and listed.rel == "" and listed.size == 3


def test_a_copy_keeps_the_content_hash_and_is_a_new_object(bucket: Bucket) -> None:
    """The content hash a listing gives (S3's single-part ETag, Azure's Content-MD5,
    GCS's md5Hash) is the bytes' MD5 and the copy keeps it; the copy answers with the
    etag and time its listing gives. A copy of nothing is a StorageError."""
    b, key = bucket, bucket.storage.key
    b.put(key("src"), b"hello")
    etag, when = b.copy(key("src"), key("dst"), 5)
    listed = {o.rel: o for o in b.objects(key(""))}
    assert listed["src"].content == listed["dst"].content == HELLO_MD5
    assert listed["dst"].etag == etag
    assert abs(listed["dst"].mtime - when) < 1.0
    assert listed["dst"].mtime >= listed["src"].mtime - 1.0
    assert b.get(key("dst")) == b"hello"
    with pytest.raises(StorageError):
        b.copy(key("nothing"), key("dst2"), 5)


@pytest.mark.parametrize("store", ["s3", "memory-s3"])
def test_an_s3_copy_part_by_part_keeps_no_content_hash(
    store: str, request: pytest.FixtureRequest
) -> None:
    """Above the multipart threshold S3 copies part by part: the copy's ETag is a
    multipart one (``<md5>-<parts>``), which proves nothing of the bytes."""
    data = os.urandom(6 << 20)
    if store == "memory-s3":
        b: Bucket = MemoryBucket("s3", part_size=5 << 20)
    else:
        b = request.getfixturevalue("s3server").storage(threshold=5 << 20).open()
    b.put(b.storage.key("big"), data)
    etag, _ = b.copy(b.storage.key("big"), b.storage.key("copy"), len(data))
    listed = {o.rel: o for o in b.objects(b.storage.key(""))}
    assert etag.endswith("-2") and listed["copy"].etag == etag
    assert listed["copy"].content is None and listed["big"].md5() is not None
    assert b.get(b.storage.key("copy")) == data


def test_a_copy_on_the_source_version_fails_once_it_is_another(bucket: Bucket) -> None:
    """``copy(if_match=)`` copies the version the etag names (S3's
    x-amz-copy-source-if-match, Azure's x-ms-source-if-match, GCS's
    ifSourceGenerationMatch), and raises Exists, copying nothing, once the source was
    written again or is gone."""
    b, key = bucket, bucket.storage.key
    first = b.put(key("src"), b"hello")
    b.copy(key("src"), key("dst"), 5, if_match=first)
    assert b.get(key("dst")) == b"hello"
    if driver(b) == "s3" and not isinstance(b, MemoryBucket):
        pytest.skip("moto 5.2 ignores x-amz-copy-source-if-match (it checks -if-none-match)")
    b.put(key("src"), b"again")
    with pytest.raises(Exists):
        b.copy(key("src"), key("dst2"), 5, if_match=first)
    with pytest.raises(Exists):
        b.copy(key("nothing"), key("dst2"), 5, if_match=first)
    assert [o.rel for o in b.objects(key("dst2"))] == []


def test_a_listing_begins_after_a_key_or_says_it_cannot(bucket: Bucket) -> None:
    """``page`` lists a page of the keys after a key (S3's StartAfter, GCS's startOffset);
    a store that cannot (Azure; GCS's emulator, which ignores startOffset: found out at
    the first page) says None, and seeks no more."""
    b, key = bucket, bucket.storage.key
    _put_all(b, [key(f"p/{c}") for c in ("a", "b", "b/x", "c", "d")] + [key("q")])
    got = b.page(key("p/"), key("p/b"))
    if got is None:
        assert not b.seeks and driver(b) in ("azure", "gcs")
        assert b.page(key("p/"), key("p/b")) is None
        return
    assert driver(b) != "azure"
    objs, more = got
    assert [o.rel for o in objs] == ["b/x", "c", "d"] and not more
    assert objs[1].size == len(key("p/c")) and objs[1].etag
    assert [o.rel for o in b.page(key("p/"), key("p/bb"))[0]] == ["c", "d"]  # type: ignore[index]
    assert b.page(key("p/"), key("p/d")) == ([], False)
    assert [o.rel for o in b.page(key("p/"), key("a"))[0]] == ["a", "b", "b/x", "c", "d"]  # type: ignore[index]


def test_a_listing_from_a_key_pages_past_1000_keys(bucket: Bucket) -> None:
    """A page from a key holds at most the store's page and says more follow."""
    if not bucket.seeks:
        pytest.skip("this store lists by prefix only")
    b, key = bucket, bucket.storage.key
    _put_all(b, [key(f"p/{n:04d}") for n in range(1102)])
    got = b.page(key("p/"), key("p/0050"))
    if got is None:  # GCS's emulator: found out here
        assert not b.seeks
        return
    objs, more = got
    assert more and [o.rel for o in objs] == [f"{n:04d}" for n in range(51, 1051)]
    rest, more = b.page(key("p/"), key("p/1050")) or ([], True)
    assert [o.rel for o in rest] == [f"{n:04d}" for n in range(1051, 1102)] and not more


def test_a_delete_of_many_keys_deletes_each_past_a_batch(bucket: Bucket) -> None:
    """A delete of more keys than one request takes (S3 1,000, Azure 256, GCS 100 to a
    batch) deletes every one, the missing ones being no error, and nothing else."""
    b, key = bucket, bucket.storage.key
    keys = [key(f"d/{n:04d}") for n in range(300)]
    _put_all(b, [*keys, key("d/kept")])
    assert b.delete([*keys[::-1], key("d/never")]) == 301
    assert [o.rel for o in b.objects(key("d/"))] == ["kept"]


def _put_all(b: Bucket, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: b.put(k, k.encode()), keys))


def test_listings_page_past_1000_keys_in_key_order(bucket: Bucket) -> None:
    """1,001 keys beside two folders under one prefix: every key once, in key order,
    with and without a delimiter (whose folders fall on both sides of a page's end)."""
    b, key = bucket, bucket.storage.key
    files = [f"f{n:04d}" for n in range(1001)]
    _put_all(b, [key(f"p/{f}") for f in files] + [key("p/a/x"), key("p/a/y"), key("p/z/1")])
    b.put(key("q"), b"beside the prefix")
    listed = [o.rel for o in b.objects(key("p/"))]
    assert listed == ["a/x", "a/y", *files, "z/1"]
    names, found = b.folders(key("p/"))
    assert names == ["a", "z"]
    assert [o.rel for o in found] == files
    assert b.folders(key("p/a/")) == ([], list(b.objects(key("p/a/"))))
    assert [o.rel for o in b.objects(key("p/a/"))] == ["x", "y"]


def test_keys_sort_by_their_bytes(bucket: Bucket) -> None:
    """Key order is byte order: "a/b" (a folder's key) before "a0", "a-" before "a/"."""
    b, key = bucket, bucket.storage.key
    rels = ["a/b", "a0", "a-", "a", "B", "é"]
    for rel in rels:
        b.put(key(rel), b"x")
    assert [o.rel for o in b.objects(key(""))] == sorted(rels, key=str.encode)
    names, files = b.folders(key(""))
    assert names == ["a"] and [o.rel for o in files] == ["B", "a", "a-", "a0", "é"]


def test_the_wrappers_count_crash_and_fail_as_told() -> None:
    """tests/buckets.py: a Counting bucket counts each request (a delete of many keys is
    one per batch); a Crashing one dies at its request, having sent it or not, and sends
    nothing after; a Faulty one fails the requests it names, done or not."""
    m = MemoryBucket("s3")
    key = m.storage.key
    counting = Counting(m, batch=2)
    counting.put(key("a"), b"1")
    assert counting.delete([key("a"), key("b"), key("c")]) == 3
    assert counting.counts == {"put": 1, "delete": 2}
    after = Crashing(counting, at=("put", 2), after=True)
    after.put(key("x"), b"1")
    with pytest.raises(Killed):
        after.put(key("y"), b"2")
    assert m.get(key("y")) == b"2"  # the store did it
    with pytest.raises(Killed):
        after.get(key("x"))  # a dead process sends nothing more
    assert counting.counts["get"] == 0
    with pytest.raises(Killed):
        Crashing(m, at=("copy", 1)).copy(key("x"), key("z"), 1)
    with pytest.raises(FileNotFoundError):
        m.get(key("z"))
    faulty = Faulty(m, at=[("put", 1)], after=True)
    with pytest.raises(StorageError, match="injected fault"):
        faulty.put(key("f"), b"1")
    assert m.get(key("f")) == b"1"
    faulty.put(key("g"), b"2")
    assert faulty.failed == [("put", 1)]


def problems(root: str, key: Path, out: Path) -> list[tuple[str, str]]:
    r = CliRunner().invoke(cli, ["plan", "--root", root, "--key", str(key), "-o", str(out),
                                 "-q", "--gc"])  # fmt: skip
    assert r.exit_code == 0, r.output
    return sorted((p["code"], p["path"]) for p in json.loads(out.read_bytes())["problems"])


@pytest.fixture(params=sorted(SERVERS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[ObjectStorage, object]]:
    server = request.getfixturevalue(SERVERS[request.param][0])
    yield server.storage(), server


def test_an_empty_link_is_reported_as_on_a_filesystem(
    served: tuple[ObjectStorage, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag whose current/link is empty (a disk that lost it): the plan on the real
    store reports what the plan on the filesystem reports, and does not fail."""
    storage, server = served
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
