"""A listing file's bucket (regplan.storage.listing.listed) lists a prefix as the store
does, streamed from the sorted file a batch at a time: in key order, from any number of
threads at once, a page of it without the rest, a key twice refused. (How little memory
that takes is measured by tests/benchmarks/bench_listing.py, not here.)"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from regplan.errors import StorageError
from regplan.storage.listing import lister
from regplan.storage.listing.listed import Listing, listed
from regplan.storage.objects.bucket import Obj
from regplan.storage.objects.memory import MemoryBucket
from tests.buckets import upload_tree
from tests.helpers import NOW

V2 = "docker/registry/v2/"


@pytest.fixture(params=["s3", "azure", "gcs"])
def bucket(request: pytest.FixtureRequest, demo_root: Path) -> MemoryBucket:
    found = MemoryBucket(request.param, clock=lambda: NOW.timestamp() - 86400)
    upload_tree(demo_root, found)
    return found


def _prefixes(bucket: MemoryBucket) -> list[str]:
    """The rootdirectory, v2, its folders, every repository and every blob shard (and
    the first digits of shards, as the scan lists few keys a shard)."""
    storage = bucket.storage
    live = storage.open()
    repos, _ = live.folders(storage.key(f"{V2}repositories/"))
    shards, _ = live.folders(storage.key(f"{V2}blobs/sha256/"))
    rels = ["", V2, f"{V2}blobs/", f"{V2}blobs/sha256/", f"{V2}repositories/"]
    rels += [f"{V2}repositories/{r}/" for r in repos]
    rels += [f"{V2}blobs/sha256/{s}/" for s in shards]
    rels += [f"{V2}blobs/sha256/{s[0]}" for s in shards]
    return [storage.key(r) for r in rels]


def _seen(objs: list[Obj]) -> list[tuple[str, int, str, str | None]]:
    """What a listing says of each key (a listing file's versions are in lower case)."""
    return [(o.rel, o.size, o.etag.lower(), o.content) for o in objs]


def test_a_listed_bucket_lists_each_prefix_as_the_store_does(
    bucket: MemoryBucket, tmp_path: Path
) -> None:
    """Every prefix the scan lists, from regplan's own listing: the store's keys, in key
    order, with their sizes, versions and content hashes; from 16 threads at once the
    same as one at a time."""
    storage = bucket.storage
    made = lister.write(storage, tmp_path / "listing.parquet")
    prefixes = _prefixes(bucket)
    live = storage.open()
    with Listing(made.path, storage) as listing:
        through = listed(storage, listing).open()
        for prefix in prefixes:
            got = list(through.objects(prefix))
            assert [o.rel for o in got] == sorted(o.rel for o in got)
            assert _seen(got) == _seen(sorted(live.objects(prefix), key=lambda o: o.rel))
            assert _seen(got) == _seen(listing.objects(prefix))
        one_by_one = [_seen(list(through.objects(p))) for p in prefixes]
        with ThreadPoolExecutor(16) as pool:
            at_once = list(pool.map(lambda p: _seen(list(through.objects(p))), prefixes * 4))
    assert at_once == one_by_one * 4


def test_a_page_of_a_listing_is_its_first_keys_and_the_rest_is_not_waited_for(
    bucket: MemoryBucket, tmp_path: Path
) -> None:
    """The scan's first look at the blobs takes a page and drops the rest: the page is
    the first keys in order, and the listing answers other listings after it (a stream
    left unfinished holds nothing another one waits for)."""
    storage = bucket.storage
    made = lister.write(storage, tmp_path / "listing.parquet")
    blobs = storage.key(f"{V2}blobs/sha256/")
    with Listing(made.path, storage) as listing:
        through = listed(storage, listing).open()
        whole = _seen(list(through.objects(blobs)))
        left = [through.objects(blobs) for _ in range(20)]
        pages = [_seen(list(itertools.islice(s, 3))) for s in left]
        assert pages == [whole[:3]] * 20
        assert _seen(list(through.objects(blobs))) == whole
        names, _ = through.folders(storage.key(f"{V2}repositories/"))
        assert names


def test_a_key_listed_twice_is_refused_when_streamed(bucket: MemoryBucket, tmp_path: Path) -> None:
    """Two rows of one key (two versions, two listings in one): not one snapshot, as
    the listing's own ``objects`` says."""
    storage = bucket.storage
    key = storage.key(f"{V2}repositories/r/_layers/sha256/ab/link")
    path = tmp_path / "l.csv"
    path.write_text(f"key,size,last_modified,etag\n{key},5,1000,abc\n{key},6,1001,abd\n")
    with Listing(path, storage) as listing:
        through = listed(storage, listing).open()
        with pytest.raises(StorageError, match="twice: not one snapshot"):
            list(through.objects(storage.key(f"{V2}repositories/")))


def test_a_row_with_no_content_hash_lists_none(bucket: MemoryBucket, tmp_path: Path) -> None:
    """An ETag that is no MD5 (a multipart upload's) proves nothing: no content; one
    that is an MD5 is the content."""
    storage = bucket.storage
    multi = storage.key(f"{V2}repositories/r/_layers/sha256/ab/link")
    single = storage.key(f"{V2}repositories/r/_layers/sha256/cd/link")
    md5 = "0123456789abcdef0123456789abcdef"
    path = tmp_path / "l.csv"
    path.write_text(f"key,size,last_modified,etag\n{multi},5,1000,abc-2\n{single},5,1000,{md5}\n")
    with Listing(path, storage) as listing:
        through = listed(storage, listing).open()
        got = list(through.objects(storage.key(f"{V2}repositories/r/")))
    assert [(o.etag, o.content) for o in got] == [("abc-2", None), (md5, md5)]
