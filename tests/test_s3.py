"""Object storage in S3's flavour. What is S3's own runs on a real S3 server (moto's,
started by the tests): the registry config's ``storage.s3`` and ``s3://`` URLs, the
multipart copy above the threshold, one-line errors of an unreachable bucket or a wrong
rootdirectory, and plan, apply, rollback and purge end to end through the CLI on
``--root s3://``. What is the scan's and the transaction's runs in-process on the
memory bucket in S3's flavour (tests/test_bucket_reads.py proves it is S3's): the scan
sees what the filesystem scan sees, reads what it must and no more, and apply and
rollback keep their promises object for object."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import attrs
import jsonschema
import pytest
from click.testing import CliRunner, Result

from regplan import workflow
from regplan.cli import cli
from regplan.decide.selection import Selection
from regplan.demo.samples import build_demo, digest_of
from regplan.errors import LockHeldError, SignatureError, StalePlanError, StorageError
from regplan.plans import codec
from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import blob_data, blob_dir, encoded_of, layer_dir
from regplan.storage import location
from regplan.storage.config import rootdirectory
from regplan.storage.fs import fsscan
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.objects import objscan
from regplan.storage.s3.bucket import ENV_THRESHOLD, S3Storage, parse_url
from tests.buckets import Counting, InMemory, mirror
from tests.helpers import NOW, drafted, selection, sign_raw, write_keys
from tests.s3server import S3Server, objects
from tests.s3server import upload_tree as upload_to_s3

SEL = attrs.evolve(selection((), ("*",)), gc=True)
GC = attrs.evolve(selection(), gc=True)


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> InMemory:
    """The demo registry in a memory bucket of S3's flavour, a minute old; the manifest
    cache is the test's own."""
    build_demo(tmp_path / "fs")
    found = InMemory.of("s3", tmp_path, tmp_path / "fs")
    found.clock.advance(60)
    monkeypatch.setenv(objscan.CACHE_ENV, str(tmp_path / "cache"))
    return found


def plant(reg: InMemory, rel: str, data: bytes) -> None:
    """A key written now (a push, or a hand's), relative to the rootdirectory."""
    reg.bucket.put(reg.storage.key(rel), data)


def test_scan_of_a_bucket_is_the_scan_of_its_files(reg: InMemory, tmp_path: Path) -> None:
    """Same tree digest, same repositories, blobs, manifests and problems as the filesystem
    scan of the same keys; so the same plan."""
    inv = objscan.scan(reg.storage, cache=tmp_path / "c")
    fs = fsscan.scan(FsStorage.locate(mirror(reg.bucket, tmp_path / "m")))
    assert inv.tree.digest == fs.tree.digest
    assert inv.blobs == fs.blobs
    assert inv.manifests == fs.manifests
    assert inv.problems == fs.problems
    assert {n: (r.revisions, r.layers, r.tags.keys()) for n, r in inv.repositories.items()} == {
        n: (r.revisions, r.layers, r.tags.keys()) for n, r in fs.repositories.items()
    }
    on_s3 = drafted(storage=reg.storage, selection=SEL, signer="t")
    on_fs = drafted(storage=FsStorage.locate(tmp_path / "m"), selection=SEL, signer="t")
    assert on_s3.targets == on_fs.targets
    assert on_s3.kept == on_fs.kept
    assert on_s3.storage is not None
    assert on_s3.storage.flat()["bucket"] == reg.storage.container
    assert on_s3.root == f"s3://{reg.storage.container}/registry"
    schema = json.loads((Path(__file__).parents[1] / "plans" / "plan.schema.json").read_text())
    jsonschema.validate(codec.unstructure(on_s3), schema)
    assert "storage" not in codec.unstructure(on_fs)  # filesystem plans are as they were


def test_links_are_not_read_and_manifests_are_read_once(reg: InMemory, tmp_path: Path) -> None:
    """Every link's content follows from its key and ETag: no GET for links. Manifests
    are GET once; a second scan takes them from the cache and GETs nothing."""
    b = Counting(reg.bucket)
    inv = objscan.scan(reg.storage, bucket=b, cache=tmp_path / "c")
    reads = b.counts["get"] + b.counts["get_to"]
    assert reads == len(inv.manifests)
    lists = b.counts["objects"] + b.counts["folders"]
    b.counts.clear()
    again = objscan.scan(reg.storage, bucket=b, cache=tmp_path / "c")
    assert again.manifests == inv.manifests
    assert b.counts["get"] + b.counts["get_to"] == 0
    assert b.counts["objects"] + b.counts["folders"] == lists
    assert lists < len(inv.tree) / 4  # a few listings, never a request per key


def test_a_poisoned_cache_is_never_believed(reg: InMemory, tmp_path: Path) -> None:
    """A cached manifest whose bytes do not hash to its name is read again from S3."""
    first = objscan.scan(reg.storage, cache=tmp_path / "c")
    for f in (tmp_path / "c").rglob("*"):
        if f.is_file():
            f.write_bytes(b'{"schemaVersion": 2, "layers": []}')
    b = Counting(reg.bucket)
    again = objscan.scan(reg.storage, bucket=b, cache=tmp_path / "c")
    assert again.manifests == first.manifests
    assert b.counts["get"] + b.counts["get_to"] == len(first.manifests)


def test_a_link_whose_etag_does_not_match_is_read(reg: InMemory, tmp_path: Path) -> None:
    """A corrupt link (its content not the digest of its key) is GET, and reported as the
    filesystem scan reports it."""
    inv = objscan.scan(reg.storage, cache=tmp_path / "c")
    repo = sorted(inv.repositories)[0]
    digest = sorted(inv.repositories[repo].layers)[0]
    plant(reg, f"docker/registry/v2/{layer_dir(repo, digest)}/link", b"garbage")
    b = Counting(reg.bucket)
    damaged = objscan.scan(reg.storage, bucket=b, cache=tmp_path / "c")
    assert b.counts["get"] + b.counts["get_to"] == 1
    assert [p.code for p in damaged.problems] == [ProblemCode.CORRUPT_LINK]
    fs = fsscan.scan(FsStorage.locate(mirror(reg.bucket, tmp_path / "m")))
    assert damaged.problems == fs.problems


def test_emptied_folders_go_with_the_targets(reg: InMemory, tmp_path: Path) -> None:
    """A bucket has no empty folders: the predicted tree drops the folders the targets
    leave empty, and a filesystem plan keeps them."""
    tree = objscan.scan(reg.storage, cache=tmp_path / "c").tree
    shard = next(p for p in tree.subtree("blobs/sha256") if p.count("/") == 2)
    blobs = [p for p in tree.subtree(shard) if p.count("/") == 3]
    assert tree.emptied(blobs) == [shard]
    assert tree.emptied(blobs[:1]) == ([] if len(blobs) > 1 else [shard])


def test_config_s3_section_and_its_env_overrides(tmp_path: Path) -> None:
    """storage.s3 read as the registry reads it; REGISTRY_STORAGE_S3_* override it; the
    keys are kept aside, never in what is printed."""
    cfg = tmp_path / "config.yml"
    cfg.write_text(
        "version: 0.1\nstorage:\n  s3: {accesskey: AK, secretkey: SK, region: eu-west-1,\n"
        "    regionendpoint: 'minio:9000', secure: false, bucket: reg, rootdirectory: /r/x}\n"
        "  delete: {enabled: true}\n"
    )
    found = rootdirectory(cfg, {})
    assert isinstance(found, S3Storage)
    assert found.record() == {
        "driver": "s3",
        "bucket": "reg",
        "rootdirectory": "r/x",
        "endpoint": "http://minio:9000",
        "region": "eu-west-1",
    }
    assert found.credentials is not None
    assert "SK" not in repr(found)
    over = rootdirectory(cfg, {"REGISTRY_STORAGE_S3_BUCKET": "other"})
    assert isinstance(over, S3Storage)
    assert over.bucket == "other"
    cfg.write_text("storage:\n  swift: {container: b}\n")
    with pytest.raises(StorageError, match="swift storage driver"):
        rootdirectory(cfg, {})


def test_s3_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"AWS_ENDPOINT_URL_S3": "http://h:1", "AWS_ENDPOINT_URL": "http://other"}
    s = parse_url("s3://b/some/root/", env)
    assert (s.bucket, s.rootdirectory, s.endpoint) == ("b", "some/root", "http://h:1")
    assert s.root == "s3://b/some/root"
    assert parse_url("s3://b", {}).v2_prefix == "docker/registry/v2/"
    for bad in ("s3://", "s3:///x", "s3://b/a/../c"):
        with pytest.raises(StorageError):
            parse_url(bad, {})
    with pytest.raises(StorageError, match="MULTIPART"):
        parse_url("s3://b", {ENV_THRESHOLD: "x"})


# -- apply, rollback and purge on the memory bucket --------------------------------


def plan_of(reg: InMemory, sel: Selection, tmp_path: Path) -> Path:
    return reg.plan(sel, tmp_path / "p.json")


def test_stale_and_tampered_plans_move_nothing(reg: InMemory, tmp_path: Path) -> None:
    """An edited plan is refused (3), a plan made before a push is stale (4) under
    ``--exact``; the bucket is untouched and no state is written."""
    p = plan_of(reg, SEL, tmp_path)
    raw = json.loads(p.read_text())
    raw["targets"][0]["reason"] = "edited"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(raw))
    with pytest.raises(SignatureError):
        reg.apply(edited)
    plant(reg, "docker/registry/v2/repositories/new/app/_layers/sha256/x/link", b"sha256:x")
    before = reg.objects()
    with pytest.raises(StalePlanError, match="repositories/new"):
        reg.apply(p, exact=True)
    assert reg.objects() == before
    assert not reg.objects("regplan-state/")


def test_a_held_lock_refuses_and_a_dead_holders_is_broken_only_on_request(
    reg: InMemory, tmp_path: Path
) -> None:
    p = plan_of(reg, SEL, tmp_path)
    lock = {
        "command": "apply x",
        "pid": os.getpid(),
        "host": "elsewhere",
        "since": "2026-11-28T10:00:00Z",
        "expires": "later",
        "expires_at": time.time() + 3600,
    }
    plant(reg, "regplan-state/lock", json.dumps(lock).encode())
    before = reg.objects()
    with pytest.raises(LockHeldError, match=r"apply x \(pid .* elsewhere"):
        reg.apply(p)
    with pytest.raises(LockHeldError):
        reg.apply(p, break_lock=True)  # a live lease is never broken
    assert reg.objects() == before
    lock["expires_at"] = time.time() - 1
    plant(reg, "regplan-state/lock", json.dumps(lock).encode())
    with pytest.raises(LockHeldError, match="--break-lock"):
        reg.apply(p)
    assert reg.apply(p, break_lock=True).fingerprint_ok
    assert not reg.objects("regplan-state/lock")


def test_keys_a_plan_cannot_name_are_kept_and_reported(reg: InMemory, tmp_path: Path) -> None:
    """Planted keys with an empty component, a '..', a control character or a name too
    long for a file system are never walked into nor targeted: each is a problem, and
    what holds it is kept (fail closed)."""
    v2 = "docker/registry/v2/repositories"
    bad = [f"{v2}/team/a\x01b/link", f"{v2}/team/{'x' * 300}/link", f"{v2}/team/../b/link",
           f"{v2}/team//c/link"]  # fmt: skip
    for rel in bad:
        plant(reg, rel, b"sha256:0")
    inv = objscan.scan(reg.storage, cache=tmp_path / "c")
    assert len([p for p in inv.problems if p.code == ProblemCode.UNNAMEABLE]) == len(bad)
    assert set(inv.blind) >= {"repositories/team/a\x01b", f"repositories/team/{'x' * 300}"}
    plan = drafted(storage=reg.storage, selection=SEL, signer="t")
    assert not any(t.kind.value == "blob" for t in plan.targets)
    assert "blobs" in {k.path for k in plan.kept}  # as on a filesystem: every blob is kept
    assert all(".." not in t.path and "\n" not in t.path for t in plan.targets)
    assert all("//" not in t.path for t in plan.targets)


def test_ages_come_from_last_modified(reg: InMemory, tmp_path: Path) -> None:
    """--gc-min-age reads each object's LastModified: an orphan blob written just now is too
    young to collect, and collected a day later; a tag's push time is its current link's
    LastModified."""
    orphan = os.urandom(64)
    d = digest_of(orphan)
    plant(reg, f"docker/registry/v2/{blob_data(d)}", orphan)
    day = attrs.evolve(GC, gc_min_age="1d")
    young = workflow.load_plan(reg.plan(day, tmp_path / "young.json"))
    assert not young.targets
    assert any("younger than --gc-min-age" in k.reason for k in young.kept)
    reg.clock.advance(86400 + 1)
    old = workflow.load_plan(reg.plan(day, tmp_path / "old.json"))
    assert [t.path for t in old.targets] == [blob_dir(d)]
    inv = objscan.scan(reg.storage, cache=tmp_path / "c")
    pushed = {t.pushed_at for r in inv.repositories.values() for t in r.tags.values()}
    assert pushed == {NOW.timestamp()}  # the clock's start: when the fixture uploaded them


def test_a_folder_marker_at_a_targets_prefix_is_restored(reg: InMemory, tmp_path: Path) -> None:
    """#21.16: the S3 console's "Create folder" writes an empty key ending in "/"; one at
    a target's own prefix moves with the target and comes back with the rollback."""
    marker = "docker/registry/v2/repositories/team/app/_manifests/tags/v1/"
    plant(reg, marker, b"")
    before = reg.objects()
    assert reg.storage.key(marker) in before
    applied = reg.apply(plan_of(reg, selection(("team/app:v1",)), tmp_path))
    assert reg.storage.key(marker) not in reg.objects()
    reg.rollback(applied.apply_id)
    assert reg.objects() == before  # the marker too


@pytest.mark.parametrize(
    "key", ["docker/registry/v2/repositories/team", "docker/registry/v2/blobs/sha256/0c"]
)
def test_a_key_that_is_also_a_folder_fails_closed_in_one_line(
    reg: InMemory, tmp_path: Path, key: str
) -> None:
    """#21.17: such a key crashed every plan, verify and apply with an AssertionError."""
    plant(reg, key, b"x")
    out = tmp_path / "p.json"
    with pytest.raises(StorageError) as e:
        reg.plan(GC, out)
    [line] = str(e.value).splitlines()
    assert line.startswith("s3://") and "is an object and a folder at once" in line
    assert not out.exists()


@pytest.mark.parametrize("edit", ["namespace", "inside", "twice"])
def test_a_re_signed_plan_regplan_would_not_make_moves_nothing(
    reg: InMemory, tmp_path: Path, edit: str
) -> None:
    """#21 (also seen): a validly signed plan with a namespace as a repository target,
    a target inside another, or one target twice is refused before anything moves
    (it was applied, then reported as "something wrote meanwhile")."""
    p = plan_of(reg, selection(("team/app:v1",)), tmp_path)
    raw = json.loads(p.read_text())
    target = {"kind": "repository", "reason": "x", "refs": [], "bytes": 0}
    if edit == "namespace":
        raw["targets"].insert(0, target | {"path": "repositories/team"})
    elif edit == "inside":
        raw["targets"].insert(0, target | {"path": "repositories/team/app/_manifests"})
    else:
        raw["targets"].insert(0, dict(raw["targets"][0]))
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(sign_raw(raw)))
    before = reg.objects()
    said = {"namespace": "another repository", "inside": "inside another", "twice": "twice"}
    with pytest.raises(StalePlanError, match=said[edit]):
        reg.apply(forged)
    assert reg.objects() == before


def test_rollback_over_a_re_pushed_tag_keeps_it_and_the_original(
    reg: InMemory, tmp_path: Path
) -> None:
    """#21, then #32: after apply, the tag's same key is written again with other bytes;
    rollback leaves the new push as it is (superseded) and keeps the quarantined
    original, which a purge then frees."""
    applied = reg.apply(plan_of(reg, selection(("team/app:v1",)), tmp_path))
    link = "docker/registry/v2/repositories/team/app/_manifests/tags/v1/current/link"
    plant(reg, link, b"sha256:" + b"f" * 64)
    held = f"regplan-state/quarantine/{applied.apply_id}/"
    result = reg.rollback(applied.apply_id)
    assert result.superseded == ("repositories/team/app/_manifests/tags/v1",)
    assert reg.bucket.get(reg.storage.key(link)) == b"sha256:" + b"f" * 64
    assert any(k.endswith("current/link") for k in reg.objects(held))
    reg.purge(applied.apply_id)
    assert not reg.objects(held)


# -- S3's own, on moto -----------------------------------------------------------


@pytest.fixture
def bucket(demo_bucket: S3Storage) -> S3Storage:
    return demo_bucket


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_keys(tmp_path)


def plan_file(storage: S3Storage, keys: tuple[Path, Path], tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "p.json"
    r = run("plan", "--root", storage.root, "--key", str(keys[0]), "-o", str(out), "-q", *extra)
    assert r.exit_code == 0, r.output
    return out


def test_apply_rollback_purge_object_for_object(
    bucket: S3Storage, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """Apply moves the targets' objects into the bucket's quarantine (nothing else
    changes); rollback restores every key with its bytes and ETag; apply again and purge
    deletes the quarantine; history tells each step."""
    before = objects(bucket)
    p = plan_file(bucket, keys, tmp_path, "--untagged", "*", "--gc")
    plan = workflow.load_plan(p)
    assert plan.targets
    r = run("apply", str(p), "--trust", str(keys[1]), "--json", "--root", bucket.root)
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    after = objects(bucket)
    prefix = bucket.key("docker/registry/v2/")
    gone = {k for k in before if k not in after}
    assert gone and not after.keys() - before.keys()
    assert all(any(k.startswith(f"{prefix}{t.path}/") for t in plan.targets) for k in gone)
    assert location.digest(bucket).digest == plan.fingerprint.after
    quarantine = objects(bucket, f"regplan-state/quarantine/{result['apply_id']}/")
    assert sorted(v for k, v in quarantine.items() if not k.endswith("INDEX.tsv")) == sorted(
        before[k] for k in gone
    )

    r = run("rollback", result["apply_id"], "--root", bucket.root, "-q")
    assert r.exit_code == 0, r.output
    assert objects(bucket) == before  # key, size, ETag, bytes
    assert not objects(bucket, "regplan-state/quarantine/")

    r = run("apply", str(p), "--trust", str(keys[1]), "--json", "--root", bucket.root)
    assert r.exit_code == 0, r.output
    second = json.loads(r.output)["apply_id"]
    r = run("purge", second, "--root", bucket.root, "-q")
    assert r.exit_code == 0, r.output
    assert not objects(bucket, "regplan-state/quarantine/")
    r = run("history", "--root", bucket.root, "--json")
    states = [(h["apply_id"], h["state"]) for h in json.loads(r.output)]
    assert states == [(result["apply_id"], "rolled-back"), (second, "purged")]
    r = run("apply", str(p), "--trust", str(keys[1]), "--root", bucket.root)
    assert r.exit_code == 4  # already applied


def test_objects_over_the_threshold_are_copied_part_by_part(
    s3server: S3Server,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blob over the multipart threshold goes to quarantine and back by UploadPartCopy
    (its ETag becomes a multipart one); its bytes come back the same."""
    storage = s3server.storage()
    build_demo(tmp_path / "fs")
    big = os.urandom(11 << 20)
    d = digest_of(big)
    data = tmp_path / "fs" / "docker" / "registry" / "v2" / blob_data(d)
    data.parent.mkdir(parents=True)
    data.write_bytes(big)
    upload_to_s3(tmp_path / "fs", storage)
    for k, v in s3server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv(ENV_THRESHOLD, str(5 << 20))
    before = objects(storage)
    p = plan_file(storage, keys, tmp_path, "--gc")
    assert any(t.path.endswith(encoded_of(d)) for t in workflow.load_plan(p).targets)
    r = run("apply", str(p), "--trust", str(keys[1]), "--json")
    assert r.exit_code == 0, r.output
    apply_id = json.loads(r.output)["apply_id"]
    moved = objects(storage, f"regplan-state/quarantine/{apply_id}/")
    [(size, etag, sha)] = [v for v in moved.values() if v[0] == len(big)]
    assert (size, sha) == (len(big), hashlib.sha256(big).hexdigest())
    assert etag.endswith("-3")  # three parts: 5 + 5 + 1 MiB
    r = run("rollback", apply_id, "--root", storage.root, "-q")
    assert r.exit_code == 0, r.output
    now = objects(storage)
    key = storage.key(f"docker/registry/v2/{blob_data(d)}")
    assert now[key] == (len(big), etag, encoded_of(d))  # its bytes back, under a multipart ETag
    assert {k: v for k, v in now.items() if k != key} == {
        k: v for k, v in before.items() if k != key
    }


def test_prune_says_it_has_nothing_to_do(
    bucket: S3Storage, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "p.json"
    r = CliRunner().invoke(
        cli, ["plan", "--root", bucket.root, "--key", str(keys[0]), "-o", str(out), "--prune"]
    )
    assert r.exit_code == 0, r.output
    assert "nothing to do on object storage" in r.output
    assert workflow.load_plan(out).targets == ()


def test_unreachable_bucket_is_one_line(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "b",
        "AWS_MAX_ATTEMPTS": "1",
    }
    r = CliRunner(env=env).invoke(
        cli, ["plan", "--root", "s3://nope/r", "--key", str(keys[0]), "--gc", "-q"]
    )
    assert r.exit_code == 1
    assert r.output.startswith("Error: s3://nope/") and r.output.count("\n") == 1


def test_a_wrong_rootdirectory_is_one_line(bucket: S3Storage, keys: tuple[Path, Path]) -> None:
    """No keys under the rootdirectory: refused like a folder without docker/registry/v2,
    not planned as an empty registry."""
    r = CliRunner().invoke(
        cli, ["plan", "--root", f"s3://{bucket.bucket}/wrong", "--key", str(keys[0]), "--gc"]
    )
    assert r.exit_code == 1
    assert "not registry storage" in r.output and r.output.count("\n") == 1
