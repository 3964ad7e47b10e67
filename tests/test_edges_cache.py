"""The manifests' edges cache (regplan/scan/edges.py, #36 part 2): a warm plan is the cold
plan byte for byte, on a filesystem and on a bucket; a warm bucket plan GETs no manifest,
and after a push only the new image's; a manifest whose stored bytes changed (another
size, another MD5) is read again; an unreadable manifest is never kept; a corrupt,
truncated or foreign cache file is ignored and written again; the cache outlives the
process that wrote it."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import duckdb
import pytest

from regplan.demo.samples import Registry, image, index
from regplan.plans import codec
from regplan.scan import edges, manifests
from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import Digest, blob_data, revision_dir
from regplan.storage.fs import fsscan
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.location import Location
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import Obj
from tests.buckets import Counting, InMemory, upload_tree
from tests.helpers import drafted, selection, write_keys

T = TypeVar("T")
SEL = attrs.evolve(selection((), ("*",), prune=True), gc=True)
V2 = "docker/registry/v2"


class Reading(Counting):
    """Counts requests and keeps the keys of the GETs."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.got: list[str] = []

    def request(self, kind: str, key: str, call: Callable[[], T]) -> T:
        if kind in ("get", "get_to"):
            self.got.append(key)
        return super().request(kind, key, call)

    def gets(self) -> list[str]:
        """The GETs since the last call, as paths relative to v2 (then forgotten)."""
        got, self.got = self.got, []
        self.counts.clear()
        return sorted(k.partition(f"{V2}/")[2] for k in got)


@pytest.fixture
def tree(demo_root: Path) -> Path:
    return demo_root


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own cache folder, named explicitly (as a filesystem plan needs it)."""
    found = tmp_path / "cache"
    monkeypatch.setenv(edges.CACHE_ENV, str(found))
    return found


def plan_bytes(storage: Location) -> bytes:
    """The plan file's text for SEL (the clock is the tests' fixed one)."""
    return "".join(codec.pretty_chunks(drafted(storage=storage, selection=SEL))).encode()


def kept(cache: Path) -> dict[str, Any]:
    """The manifests the cache file holds."""
    return edges.read_all(cache / edges.FILE)


def manifests_of(bucket: InMemory) -> set[str]:
    """The paths of the manifests the registry names (revisions and tags)."""
    inv = objscan.scan(bucket.storage, cache=None)
    return {blob_data(d) for d, m in inv.manifests.items() if m.known}


def test_a_warm_filesystem_plan_is_the_cold_plan(
    tree: Path, cache: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same bytes cold, warm and without any cache; warm, every manifest's facts come
    from the cache (none is parsed)."""
    storage = FsStorage.locate(tree)
    cold = plan_bytes(storage)
    inv = fsscan.scan(storage)
    assert set(kept(cache)) == {d for d, m in inv.manifests.items() if m.known}
    with caplog.at_level(logging.DEBUG, logger="regplan.scan.edges"):
        warm = plan_bytes(storage)
    assert warm == cold
    assert f"manifest edges: {len(inv.manifests)} from the cache, 0 added" in caplog.text
    monkeypatch.delenv(edges.CACHE_ENV)
    assert plan_bytes(storage) == cold


def test_a_warm_bucket_plan_is_the_cold_plan_and_gets_no_manifest(
    tree: Path, tmp_path: Path, cache: Path
) -> None:
    reg = InMemory.of("s3", tmp_path, tree)
    b = Reading(reg.bucket)
    cold = plan_bytes(reg.through(b))
    assert b.gets() == sorted(manifests_of(reg))
    warm = plan_bytes(reg.through(b))
    assert warm == cold
    assert b.gets() == []


def test_after_a_push_only_the_new_images_manifests_are_read(
    tree: Path, tmp_path: Path, cache: Path
) -> None:
    """A multi-arch push: its index and two children are GET, nothing else; the next
    plan GETs nothing."""
    reg = InMemory.of("s3", tmp_path, tree)
    b = Reading(reg.bucket)
    plan_bytes(reg.through(b))
    b.gets()
    multi = index([image([{"n": b"1"}], arch="amd64"), image([{"n": b"2"}], arch="arm64")])
    Registry(v2=tree / V2).push("team/new", multi, "v1")
    upload_tree(tree, reg.bucket)  # every key again: the old ones' bytes (and MD5s) as they were
    pushed = plan_bytes(reg.through(b))
    new = [multi.manifest.digest, *(c.manifest.digest for c in multi.children)]
    assert b.gets() == sorted(blob_data(d) for d in new)
    assert plan_bytes(reg.through(b)) == pushed
    assert b.gets() == []


def _rewritten(data: bytes, same_size: bool) -> bytes:
    """The manifest with another first layer (a digest no blob has): another size, or
    the same size and another MD5."""
    doc = json.loads(data)
    layer = doc["layers"][0]
    layer["digest"] = "sha256:" + hashlib.sha256(b"elsewhere").hexdigest()
    out = json.dumps(doc, indent=3).encode()
    if same_size:
        out = json.dumps(doc, separators=(",", ":")).encode()
        out += b" " * (len(data) - len(out))
        assert len(out) == len(data)
    else:
        assert len(out) != len(data)
    return out


def _an_image_manifest(reg: InMemory) -> Digest:
    inv = objscan.scan(reg.storage, cache=None)
    return min(d for d, m in inv.manifests.items() if m.config is not None)


@pytest.mark.parametrize("same_size", [False, True], ids=["size", "md5"])
def test_a_manifest_whose_bytes_were_replaced_is_read_again_on_a_bucket(
    tree: Path, tmp_path: Path, cache: Path, same_size: bool
) -> None:
    """Its listed size (or, at the same size, its listed MD5) is not the cached one's: it
    is GET and its facts are those of the bytes the bucket holds now."""
    reg = InMemory.of("s3", tmp_path, tree)
    b = Reading(reg.bucket)
    cold = plan_bytes(reg.through(b))
    digest = _an_image_manifest(reg)
    key = reg.storage.key(f"{V2}/{blob_data(digest)}")
    data = _rewritten(reg.bucket.get(key), same_size)
    reg.bucket.put(key, data)
    b.gets()
    inv = objscan.scan(reg.through(b), cache=cache)
    assert b.gets() == [blob_data(digest)]
    assert inv.manifests[digest] == manifests.parse(data)
    assert plan_bytes(reg.through(b)) != cold  # the new layer's absence is a fact of it now


def test_a_manifest_whose_size_changed_is_read_again_on_a_filesystem(
    tree: Path, cache: Path
) -> None:
    storage = FsStorage.locate(tree)
    first = fsscan.scan(storage)
    digest = min(d for d, m in first.manifests.items() if m.config is not None)
    path = tree / V2 / blob_data(digest)
    data = _rewritten(path.read_bytes(), same_size=False)
    path.write_bytes(data)
    again = fsscan.scan(storage)
    assert again.manifests[digest] == manifests.parse(data) != first.manifests[digest]


def test_an_unreadable_manifest_is_never_kept(tree: Path, tmp_path: Path, cache: Path) -> None:
    """Bytes that hash to their name but are no manifest: GET on every plan, reported."""
    reg = InMemory.of("s3", tmp_path, tree)
    objscan.scan(reg.storage, cache=cache)
    junk = b"not a manifest"
    digest = Digest("sha256:" + hashlib.sha256(junk).hexdigest())
    reg.bucket.put(reg.storage.key(f"{V2}/{blob_data(digest)}"), junk)
    link = f"{V2}/{revision_dir('team/app', digest)}/link"
    reg.bucket.put(reg.storage.key(link), digest.encode())
    b = Reading(reg.bucket)
    for _ in range(2):
        inv = objscan.scan(reg.through(b), cache=cache)
        assert b.gets() == [blob_data(digest)]
        assert not inv.manifests[digest].known
        assert ProblemCode.UNREADABLE_MANIFEST in {p.code for p in inv.problems}
    assert digest not in kept(cache)


def _garbage(f: Path) -> None:
    f.write_bytes(b"\x00garbage" * 100)


def _truncated(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _empty(f: Path) -> None:
    f.write_bytes(b"")


def _foreign(f: Path) -> None:
    """A Parquet file of another schema."""
    f.unlink()
    duckdb.sql(f"COPY (SELECT 1 AS x, 'y' AS z) TO '{f}' (FORMAT parquet)")


def _forged(f: Path) -> None:
    """Our schema, but a row this module never writes (an unknown manifest kept)."""
    duckdb.sql(
        f"COPY (SELECT * REPLACE ('unknown' AS kind) FROM read_parquet('{f}')) "  # noqa: S608
        f"TO '{f}.new' (FORMAT parquet)"
    )
    Path(f"{f}.new").replace(f)


def _apart(f: Path) -> None:
    """Our rows, but a manifest's no longer together (a part is never taken for the whole)."""
    duckdb.sql(
        f"COPY (SELECT * FROM read_parquet('{f}') ORDER BY relation, manifest) "  # noqa: S608
        f"TO '{f}.new' (FORMAT parquet)"
    )
    Path(f"{f}.new").replace(f)


def _descending(f: Path) -> None:
    """Our rows, each manifest's together, but the manifests in descending order (a save
    merges the file with what it learnt in one pass, which needs the file's order)."""
    duckdb.sql(
        f"COPY (SELECT * FROM read_parquet('{f}') ORDER BY manifest DESC, relation, child) "  # noqa: S608
        f"TO '{f}.new' (FORMAT parquet)"
    )
    Path(f"{f}.new").replace(f)


@pytest.mark.parametrize(
    "spoil",
    [_garbage, _truncated, _empty, _foreign, _forged, _apart, _descending],
    ids=["garbage", "truncated", "empty", "foreign", "forged", "apart", "descending"],
)
def test_a_corrupt_cache_file_is_ignored_and_written_again(
    tree: Path, tmp_path: Path, cache: Path, spoil: Callable[[Path], None]
) -> None:
    reg = InMemory.of("s3", tmp_path, tree)
    b = Reading(reg.bucket)
    cold = plan_bytes(reg.through(b))
    every = b.gets()
    spoil(cache / edges.FILE)
    assert kept(cache) == {}
    assert plan_bytes(reg.through(b)) == cold
    assert b.gets() == every  # read again, as without a cache
    assert len(kept(cache)) == len(every)  # and kept again
    assert plan_bytes(reg.through(b)) == cold
    assert b.gets() == []


def test_two_plans_saving_at_once_keep_both(tree: Path, tmp_path: Path, cache: Path) -> None:
    """Each save merges what another plan saved since it loaded the file."""
    reg = InMemory.of("s3", tmp_path, tree)
    inv = objscan.scan(reg.storage, cache=tmp_path / "other")  # a cache of its own
    ms = sorted(d for d, m in inv.manifests.items() if m.known)
    first, second = edges.Edges(cache), edges.Edges(cache)
    for e, half in ((first, ms[::2]), (second, ms[1::2])):
        for d in half:
            data = reg.bucket.get(reg.storage.key(f"{V2}/{blob_data(d)}"))
            e.learn(d, data, manifests.parse(data))
    first.save()
    second.save()
    assert set(kept(cache)) == set(ms)
    assert sorted(p.name for p in cache.iterdir()) == [edges.LOCK, edges.FILE]  # no temp left


def test_the_cache_outlives_the_process_that_wrote_it(tree: Path, tmp_path: Path) -> None:
    """Two `regplan plan` processes: the second takes every manifest from the cache the
    first wrote and plans the same; a bucket of the same tree then GETs no manifest."""
    key, _ = write_keys(tmp_path)
    cache = tmp_path / "cache"
    env = {**os.environ, edges.CACHE_ENV: str(cache), "HOME": str(tmp_path)}
    runs = []
    for n in (1, 2):
        out = tmp_path / f"p{n}.json"
        argv = [sys.executable, "-m", "regplan", "-v", "plan", "--root", str(tree),
                "--key", str(key), "--untagged", "*", "--gc", "-o", str(out)]  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert done.returncode in (0, 2), done.stderr
        plan = json.loads(out.read_text())
        runs.append((plan, done.stderr))
    count = len(kept(cache))
    assert count > 0
    assert f"manifest edges: 0 from the cache, {count} added" in runs[0][1]
    assert f"manifest edges: {count} from the cache, 0 added" in runs[1][1]
    same = ("targets", "kept", "problems", "fingerprint", "request")
    assert {k: runs[0][0][k] for k in same} == {k: runs[1][0][k] for k in same}
    assert len({plan["plan_id"].rpartition("-")[2] for plan, _ in runs}) == 1  # but its time
    reg = InMemory.of("s3", tmp_path, tree)
    b = Reading(reg.bucket)
    objscan.scan(reg.through(b), cache=cache)
    assert b.gets() == []


class NoMd5(Reading):
    """Lists every object as a store that keeps no MD5 of it (a multipart S3 upload, an
    Azure blob put block by block)."""

    def objects(self, prefix: str) -> Iterator[Obj]:
        return (attrs.evolve(o, content=None) for o in super().objects(prefix))

    def folders(self, prefix: str) -> tuple[list[str], list[Obj]]:
        names, objs = super().folders(prefix)
        return names, [attrs.evolve(o, content=None) for o in objs]

    def page(self, prefix: str, after: str) -> tuple[list[Obj], bool] | None:
        found = super().page(prefix, after)
        if found is None:
            return None
        return [attrs.evolve(o, content=None) for o in found[0]], found[1]


def test_a_manifest_the_listing_gives_no_md5_for_is_read_again(
    tree: Path, tmp_path: Path, cache: Path
) -> None:
    """Its size alone proves nothing on a bucket: every manifest is GET again (and every
    link, which nothing proves either)."""
    reg = InMemory.of("s3", tmp_path, tree)
    objscan.scan(reg.storage, cache=cache)
    assert kept(cache)
    b = NoMd5(reg.bucket)
    inv = objscan.scan(reg.through(b), cache=cache)
    got = [p for p in b.gets() if p.startswith("blobs/")]
    assert got == sorted(blob_data(d) for d, m in inv.manifests.items() if m.known)


def test_a_cache_folder_regplan_cannot_use_costs_reads_only(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache folder that cannot be looked into (here a name too long for the system):
    the plan is the plan without a cache, every manifest read, no error."""
    reg = InMemory.of("s3", tmp_path, tree)
    b = Reading(reg.bucket)
    cold = objscan.scan(reg.through(b), cache=tmp_path / "cold")
    every = b.gets()
    unusable = tmp_path / ("x" * 300) / "cache"
    monkeypatch.setenv(edges.CACHE_ENV, str(unusable))
    for _ in range(2):
        inv = objscan.scan(reg.through(b), cache=unusable)
        assert b.gets() == every
        assert inv.manifests == cold.manifests


def test_rows_regplan_never_writes_are_not_carried_into_the_next_file(
    tree: Path, tmp_path: Path, cache: Path
) -> None:
    """A manifest no plan asks about, with two heads and an edge to no digest: the next
    save writes what it learnt without the old file's rows, and the file is ours again."""
    reg = InMemory.of("s3", tmp_path, tree)
    inv = objscan.scan(reg.storage, cache=cache)
    f = cache / edges.FILE
    stranger = "sha256:" + "9" * 64
    duckdb.sql(
        f"COPY (SELECT * FROM read_parquet('{f}') UNION ALL "  # noqa: S608
        f"SELECT '{stranger}', 'oci-index', 10, repeat('a', 32), 'child', 'not-a-digest' "
        f"UNION ALL SELECT '{stranger}', 'oci-index', 11, repeat('b', 32), NULL, NULL "
        f"ORDER BY manifest) TO '{f}.new' (FORMAT parquet)"
    )
    Path(f"{f}.new").replace(f)
    assert kept(cache) == {}
    d = min(d for d, m in inv.manifests.items() if m.known)
    data = reg.bucket.get(reg.storage.key(f"{V2}/{blob_data(d)}"))
    learning = edges.Edges(cache)
    learning.learn(d, data, manifests.parse(data))
    learning.save()
    assert set(kept(cache)) == {d}


def _learn(cache: Path, reg: InMemory, digests: list[Digest]) -> None:
    learning = edges.Edges(cache)
    for d in digests:
        data = reg.bucket.get(reg.storage.key(f"{V2}/{blob_data(d)}"))
        learning.learn(d, data, manifests.parse(data))
    learning.save()


def test_a_save_replaces_the_old_rows_of_what_it_learnt_and_keeps_the_rest(
    tree: Path, tmp_path: Path, cache: Path
) -> None:
    """The old file says another size of a manifest (rows this module could write, but
    not that manifest's): the one learnt replaces them; the others stay as they were,
    and the file stays in manifest order (the next save merges it again)."""
    reg = InMemory.of("s3", tmp_path, tree)
    inv = objscan.scan(reg.storage, cache=cache)
    before = kept(cache)
    f = cache / edges.FILE
    d = sorted(before)[len(before) // 2]
    duckdb.sql(
        f"COPY (SELECT * REPLACE (CASE WHEN manifest = '{d}' THEN size + 1 ELSE size END "  # noqa: S608
        f"AS size) FROM read_parquet('{f}') ORDER BY manifest, relation, child) "
        f"TO '{f}.new' (FORMAT parquet)"
    )
    Path(f"{f}.new").replace(f)
    assert kept(cache)[d].size == before[d].size + 1
    _learn(cache, reg, [Digest(d)])
    assert kept(cache) == before
    rows = duckdb.execute("SELECT manifest FROM read_parquet(?)", [str(f)]).fetchall()
    order = [m for (m,) in rows]
    assert order == sorted(order)
    assert inv.manifests[Digest(d)] == before[d].manifest(Digest)


def test_manifests_are_learnt_in_digest_order_only(tree: Path, tmp_path: Path, cache: Path) -> None:
    """A scan reads them in that order; learning one out of it is a caller's bug, said."""
    reg = InMemory.of("s3", tmp_path, tree)
    inv = objscan.scan(reg.storage, cache=None)
    ms = sorted(d for d, m in inv.manifests.items() if m.known)
    with pytest.raises(ValueError, match="learnt after"):
        _learn(cache, reg, [ms[1], ms[0]])
    with pytest.raises(ValueError, match="learnt after"):
        _learn(cache, reg, [ms[0], ms[0]])
