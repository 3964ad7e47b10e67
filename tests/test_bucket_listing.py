"""The keys at many places in few requests (regplan/storage/objects/objlist.py): what a
bucket that seeks lists page by page from a key is exactly what each place's own
listing gives, whatever lies between the places and wherever a page ends; it lists no
key twice, takes one request a place where places lie far apart and about one a page
where they lie close, and a store that cannot seek lists each place."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

import attrs
import pytest

from regplan.storage.objects.bucket import Bucket, Obj
from regplan.storage.objects.memory import S3, MemoryBucket
from regplan.storage.objects.objlist import Place, listed
from tests.buckets import Counting

T = TypeVar("T")
NAMES = ["a", "a-", "a0", "ab", "b", "b/c", "c", "cc", "d"]
"""Path components that sort on both sides of ``/`` (``a-`` < ``a/`` < ``a0``)."""


def _tree(rng: random.Random, b: MemoryBucket, root: str) -> list[str]:
    """Random keys a few levels deep under ``root``; the rels put."""
    rels: set[str] = set()
    for _ in range(rng.randrange(0, 60)):
        depth = rng.randrange(1, 4)
        rels.add("/".join(rng.choice(NAMES) for _ in range(depth)))
    # a key that is also a folder's name, a folder marker: both a listing shows
    rels |= {"b", "b/"} if rng.random() < 0.3 else set()
    for rel in sorted(rels):
        b.put(root + rel, rel.encode())
    return sorted(rels)


def _places(rng: random.Random, root: str, rels: list[str]) -> list[Place]:
    """Places that do not nest (as apply's preflight makes them): folders and single
    files, some holding nothing."""
    chosen: list[Place] = []
    taken: list[str] = []
    candidates = sorted({r.rsplit("/", 1)[0] for r in rels if "/" in r} | set(rels) | {"zz"})
    for path in rng.sample(candidates, k=min(len(candidates), rng.randrange(1, 8))):
        if any(path.startswith(t + "/") or t.startswith(path + "/") or t == path for t in taken):
            continue
        taken.append(path)
        if rng.random() < 0.5 and "/" in path:
            folder, _, name = path.rpartition("/")
            chosen.append(Place(path, folder, f"{root}{folder}/", name))
        else:
            chosen.append(Place(path, path, f"{root}{path}/"))
    rng.shuffle(chosen)
    return chosen


def _own(b: Bucket, places: list[Place]) -> list[list[tuple[str, int]]]:
    return [[(o.rel, o.size) for o in p.objects(b)] for p in places]


def _pairs(found: list[list[Obj]]) -> list[list[tuple[str, int]]]:
    return [[(o.rel, o.size) for o in objs] for objs in found]


@pytest.mark.parametrize("page", [1, 2, 3, 1000])
def test_a_listing_from_each_place_on_is_each_place_s_own(page: int) -> None:
    rng = random.Random(page)  # noqa: S311 (a test tree, not a secret)
    for _ in range(150):
        b = MemoryBucket(attrs.evolve(S3, page=page))
        root = b.storage.v2_prefix
        rels = _tree(rng, b, root)
        b.put(b.storage.key("beside"), b"x")  # before and after the tree
        b.put(b.storage.key("regplan-state/x"), b"x")
        places = _places(rng, root, rels)
        counting = Counting(b)
        assert _pairs(listed(counting, places)) == _own(b, places), (rels, places)
        keys = len(list(b.objects(root)))  # no key is listed twice: a page a jump at most
        assert counting.counts["page"] <= len(places) + -(-keys // page)


def test_places_close_together_share_pages_and_far_apart_cost_one_each() -> None:
    """Every other blob folder of 2,000 (1,000 places): a page of 1,000 keys covers 500 of
    them, two requests in all; 5 far apart (1,200 keys) take 5 requests, one each."""
    b = MemoryBucket("s3")
    root = b.storage.v2_prefix
    for n in range(5000):
        b.put(f"{root}blobs/sha256/{n:05d}/data", b"x")
    close = [Place(f"{n}", f"{n}", f"{root}blobs/sha256/{n:05d}/") for n in range(1000, 3000, 2)]
    counting = Counting(b)
    assert _pairs(listed(counting, close)) == [[("data", 1)]] * 1000
    assert counting.counts["page"] == 2
    far = [Place(f"b{n}", f"b{n}", f"{root}blobs/sha256/{n:05d}/") for n in range(0, 5000, 1200)]
    counting.counts.clear()
    assert _pairs(listed(counting, far)) == [[("data", 1)]] * len(far)
    assert counting.counts["page"] == len(far)


class Threads(Counting):
    """Counts, and notes which thread sent each page request."""

    def __init__(self, inner: Bucket) -> None:
        super().__init__(inner)
        self.threads: set[int] = set()

    def request(self, kind: str, key: str, call: Callable[[], T]) -> T:
        if kind == "page":
            self.threads.add(threading.get_ident())
        return super().request(kind, key, call)


def test_places_far_apart_are_listed_in_runs_at_once() -> None:
    """When the first pages find one place each, the rest are listed in runs at once
    (each paging on its own): the same keys, one request a place."""
    b = MemoryBucket("s3")
    root = b.storage.v2_prefix
    for n in range(40 * 1001):
        b.put(f"{root}r/{n:06d}/link", b"x")
    places = [Place(f"{n}", f"{n}", f"{root}r/{n:06d}/") for n in range(0, 40 * 1001, 1001)]
    threads = Threads(b)
    assert _pairs(listed(threads, places)) == [[("link", 1)]] * len(places)
    assert threads.counts["page"] == len(places)
    assert len(threads.threads) > 1


def test_a_store_that_cannot_seek_lists_each_place() -> None:
    b = MemoryBucket("azure")
    root = b.storage.v2_prefix
    for rel in ("a/1", "a/2", "b/1", "c"):
        b.put(root + rel, b"x")
    places = [Place("b", "b", f"{root}b/"), Place("a", "a", f"{root}a/"), Place("c", "", root, "c")]
    counting = Counting(b)
    assert _pairs(listed(counting, places)) == [[("1", 1)], [("1", 1), ("2", 1)], [("c", 1)]]
    assert counting.counts == {"objects": 3}
