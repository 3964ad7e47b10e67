"""plan from a listing (regplan.listing): the same plan as a scan that lists the
bucket, from regplan's own listing and from an S3 Inventory report, with no listing
request; what a listing cannot be is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regplan import workflow
from regplan.decide.selection import ImageSpec, Selection
from regplan.demo.samples import build_scale
from regplan.errors import StorageError
from regplan.plans.plan import Plan, TargetKind
from regplan.scan.layout import Digest, blob_data
from regplan.storage.listing import lister
from regplan.storage.listing.listed import Listing, listed
from regplan.storage.objects.memory import MemoryBucket, MemoryStorage
from tests.buckets import Counting, InMemory, upload_tree
from tests.helpers import KEY, NOW, drafted
from tests.inventories import azure_inventory, blobs_of, gcs_inventory, rows_of, s3_inventory

SELECTIONS = {
    "untagged-gc": Selection(untagged=("*",), gc=True),
    "image": Selection(images=(ImageSpec.parse("team/app:v1"),)),
    "repo-gc": Selection(images=(ImageSpec.parse("old/repo"),), gc=True),
}


def _decided(plan: Plan) -> tuple[object, ...]:
    return plan.targets, plan.kept, plan.problems, plan.fingerprint, plan.summary


@pytest.fixture(params=["s3", "azure", "gcs"])
def bucket(request: pytest.FixtureRequest, demo_root: Path) -> MemoryBucket:
    found = MemoryBucket(request.param, clock=lambda: NOW.timestamp() - 86400)
    upload_tree(demo_root, found)
    return found


@pytest.mark.parametrize("name", sorted(SELECTIONS))
def test_a_plan_from_regplans_own_listing_is_the_scans(
    bucket: MemoryBucket, tmp_path: Path, name: str
) -> None:
    """regplan list, then plan from it: the same targets, kept, problems and
    fingerprint as a plan that lists the bucket, and no listing request is made."""
    storage = bucket.storage
    made = lister.write(storage, tmp_path / "listing.parquet")
    assert made.keys == len(bucket.snapshot(""))
    scanned = drafted(storage=storage, selection=SELECTIONS[name])
    counting = Counting(bucket)
    with Listing(made.path, storage) as listing:
        assert listing.source.format == "regplan"
        from_listing = drafted(
            storage=listed(storage.opening(counting), listing), selection=SELECTIONS[name]
        )
    assert _decided(from_listing) == _decided(scanned)
    assert counting.counts["objects"] == counting.counts["folders"] == 0


@pytest.mark.parametrize("fmt", ["CSV", "Parquet"])
def test_a_plan_from_an_s3_inventory_report_is_the_scans(
    demo_root: Path, tmp_path: Path, fmt: str
) -> None:
    """An S3 Inventory report (manifest.json and its data files): links are proven
    from the ETags as a listing of the bucket proves them."""
    bucket = MemoryBucket("s3", clock=lambda: NOW.timestamp() - 86400)
    upload_tree(demo_root, bucket)
    storage = bucket.storage
    manifest = s3_inventory(
        rows_of(bucket),
        tmp_path / "inv",
        bucket=storage.container,
        created=NOW.timestamp(),
        fmt=fmt,
    )
    counting = Counting(bucket)
    for sel in SELECTIONS.values():
        with Listing(manifest, storage) as listing:
            assert listing.source.format == "s3-inventory"
            assert listing.source.listed_at == NOW.timestamp()
            got = drafted(storage=listed(storage.opening(counting), listing), selection=sel)
        assert _decided(got) == _decided(drafted(storage=storage, selection=sel))
    assert counting.counts["get"] < 40  # manifests only: every link proven by its ETag
    assert counting.counts["objects"] == counting.counts["folders"] == 0


def _cloud_report(bucket: MemoryBucket, folder: Path, fmt: str, taken: float) -> Path:
    """The Azure or GCS inventory report of ``bucket`` (by its flavour)."""
    name = bucket.storage.container
    if bucket.flavour.driver == "azure":
        return azure_inventory(blobs_of(bucket), folder, container=name, started=taken, fmt=fmt)
    return gcs_inventory(blobs_of(bucket), folder, bucket=name, taken=taken, fmt=fmt)


@pytest.mark.parametrize("flavour", ["azure", "gcs"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_plan_from_an_azure_or_gcs_inventory_is_the_scans(
    demo_root: Path, tmp_path: Path, flavour: str, fmt: str
) -> None:
    """An Azure Blob Inventory run (an account's report: another container's blob and
    a snapshot in it too) or a GCS Storage Insights report: links are proven from
    Content-MD5 / md5Hash as a listing of the bucket proves them."""
    bucket = MemoryBucket(flavour, clock=lambda: NOW.timestamp() - 86400)
    upload_tree(demo_root, bucket)
    storage = bucket.storage
    manifest = _cloud_report(bucket, tmp_path / "inv", fmt, NOW.timestamp())
    counting = Counting(bucket)
    for sel in SELECTIONS.values():
        with Listing(manifest, storage) as listing:
            assert listing.source.format == f"{flavour}-inventory"
            assert listing.source.listed_at == NOW.timestamp()
            assert listing.count == len(bucket.snapshot(""))
            got = drafted(storage=listed(storage.opening(counting), listing), selection=sel)
        assert _decided(got) == _decided(drafted(storage=storage, selection=sel))
    assert counting.counts["get"] < 40  # manifests only: every link proven by its MD5
    assert counting.counts["objects"] == counting.counts["folders"] == 0


@pytest.mark.parametrize(
    ("flavour", "change", "said"),
    [
        ("azure", {"status": "Pending"}, "is 'Pending', not Succeeded"),
        ("azure", {"ruleDefinition": {"format": "csv", "objectType": "container"}}, "'container'"),
        ("azure", {"inventoryStartTime": "soon"}, "its inventoryStartTime 'soon' is not a time"),
        ("azure", {"files": [{"blob": "x.csv"}]}, "not an Azure Blob Inventory manifest"),
        ("azure", {"files": [{"blob": "gone.csv", "size": 1}]}, "gone.csv is not beside it"),
        ("gcs", {"shard_count": 2}, "its shard_count 2 is not the 1 shards named"),
        ("gcs", {"snapshot_time": None}, "its snapshot_time 'None' is not a time"),
        ("gcs", {"report_shards_file_names": "x"}, "report_shards_file_names is no list"),
        ("gcs", {"report_config": []}, "not a GCS inventory manifest"),
    ],
)
def test_an_azure_or_gcs_manifest_regplan_cannot_read_is_refused(
    demo_root: Path, tmp_path: Path, flavour: str, change: dict[str, object], said: str
) -> None:
    bucket = MemoryBucket(flavour)
    upload_tree(demo_root, bucket)
    manifest = _cloud_report(bucket, tmp_path, "csv", 0)
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}))
    manifest.with_name("regplan-rule-manifest.checksum").unlink(missing_ok=True)
    with pytest.raises(StorageError, match=said) as e:
        Listing(manifest, bucket.storage)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("flavour", "damage", "said"),
    [
        ("azure", "data", "its size is not the manifest's"),
        ("azure", "manifest", "its MD5 is not its checksum file's"),
        ("azure", "md5", "cannot read it as a listing"),
        ("gcs", "md5", "cannot read it as a listing"),
        ("gcs", "bucket", "lists bucket 'other'"),
    ],
)
def test_a_damaged_azure_or_gcs_report_is_refused(
    demo_root: Path, tmp_path: Path, flavour: str, damage: str, said: str
) -> None:
    """A data file or manifest that is not the run's, a Content-MD5 / md5Hash that is
    no base64, a report of another bucket: one line each."""
    bucket = MemoryBucket(flavour)
    upload_tree(demo_root, bucket)
    manifest = _cloud_report(bucket, tmp_path, "csv", 0)
    data = next(p for p in manifest.parent.iterdir() if p.suffix == ".csv")
    if damage == "data":
        data.write_bytes(data.read_bytes() + b"\n")
    elif damage == "manifest":
        manifest.write_text(manifest.read_text().replace('"Succeeded"', '"Succeeded" '))
    elif damage == "md5":
        lines = data.read_text().splitlines()
        b64 = next(c for c in lines[1].split(",") if c.endswith("="))
        data.write_text("\n".join([lines[0], lines[1].replace(b64, "!!"), *lines[2:]]) + "\n")
        if flavour == "azure":
            text = manifest.read_text()
            size = json.loads(text)["files"][0]["size"]
            manifest.write_text(text.replace(f'"size": {size}', f'"size": {data.stat().st_size}'))
            manifest.with_name("regplan-rule-manifest.checksum").unlink()
    else:
        report = json.loads(manifest.read_text())
        report["report_config"]["objectMetadataReportOptions"]["storageFilters"]["bucket"] = "other"
        manifest.write_text(json.dumps(report))
    with pytest.raises(StorageError, match=said) as e:
        Listing(manifest, bucket.storage)
    assert "\n" not in str(e.value)


def test_an_inventory_of_another_bucket_is_refused(bucket: MemoryBucket, tmp_path: Path) -> None:
    manifest = s3_inventory(rows_of(bucket), tmp_path, bucket="other-bucket", created=0)
    with pytest.raises(StorageError, match="lists bucket 'other-bucket'"):
        Listing(manifest, bucket.storage)


def test_a_damaged_data_file_is_refused(bucket: MemoryBucket, tmp_path: Path) -> None:
    storage: MemoryStorage = bucket.storage
    manifest = s3_inventory(rows_of(bucket), tmp_path, bucket=storage.container, created=0)
    data = next((tmp_path / storage.container).rglob("*.csv.gz"))
    data.write_bytes(data.read_bytes() + b"\0")
    with pytest.raises(StorageError, match="its MD5 is not the manifest's"):
        Listing(manifest, storage)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"fileFormat": "ORC"}, "ORC is not read"),
        ({"fileSchema": "Bucket, Key, Size"}, "must name Key, Size, LastModifiedDate and ETag"),
        ({"fileSchema": "Bucket, Key', Size, LastModifiedDate, ETag"}, "only plain column names"),
        ({"creationTimestamp": "soon"}, "not an S3 Inventory manifest"),
    ],
)
def test_a_manifest_regplan_cannot_read_is_refused(
    bucket: MemoryBucket, tmp_path: Path, change: dict[str, str], said: str
) -> None:
    storage = bucket.storage
    manifest = s3_inventory(rows_of(bucket), tmp_path, bucket=storage.container, created=0)
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), **change}))
    with pytest.raises(StorageError, match=said):
        Listing(manifest, storage)


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("l.csv", "key,size\na,1\n", "no column last_modified"),
        ("l.txt", "key\n", "a .parquet or .csv file"),
        ("l.parquet", "not parquet", "cannot read it as a listing"),
    ],
)
def test_a_file_that_is_no_listing_is_refused(
    bucket: MemoryBucket, tmp_path: Path, name: str, text: str, said: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(StorageError, match=said):
        Listing(path, bucket.storage)


def test_a_plain_csv_listing_is_dated_by_its_newest_key(
    bucket: MemoryBucket, tmp_path: Path
) -> None:
    """A CSV of keys says nothing of when it was taken: at least when its newest key was
    written (the age --gc-min-age must cover is then never less than the truth)."""
    rows = rows_of(bucket)
    path = tmp_path / "keys.csv"
    lines = ["key,size,last_modified,etag"] + [f"{k},{s},{m},{e}" for k, s, m, e in rows]
    path.write_text("\n".join(lines) + "\n")
    with Listing(path, bucket.storage) as listing:
        assert listing.source.format == "csv"
        assert listing.source.listed_at == max(m for _, _, m, _ in rows)
        assert listing.count == len(rows)


def test_a_push_after_the_listing_keeps_what_it_uses(demo_root: Path, tmp_path: Path) -> None:
    """The listing goes stale: after it, an untagged manifest the plan removes is tagged.
    Apply lists the store again and keeps that manifest, its blobs and layer links;
    the rest of the plan moves."""
    reg = InMemory.of("s3", tmp_path, demo_root)
    made = lister.write(reg.storage, tmp_path / "listing.parquet")
    reg.clock.advance(7200)
    sel = Selection(untagged=("*",), gc=True, gc_min_age="1h")
    with (
        Listing(made.path, reg.storage) as listing,
        workflow.make_plan(
            storage=listed(reg.storage, listing),
            selection=sel,
            argv=("regplan", "plan"),
            key=KEY,
            signer="test-planner",
            now=reg.clock.now(),
        ) as draft,
    ):
        plan = workflow.whole(draft)
        workflow.write_plan(draft, tmp_path / "p.json")
    revisions = [t.path for t in plan.targets if t.kind is TargetKind.REVISION]
    assert revisions
    repo, _, rest = revisions[0].removeprefix("repositories/").partition("/_manifests/")
    digest = "sha256:" + rest.rpartition("/")[2]
    tag = f"docker/registry/v2/repositories/{repo}/_manifests/tags/pushed-later"
    reg.bucket.put(reg.storage.key(f"{tag}/current/link"), digest.encode())
    reg.bucket.put(reg.storage.key(f"{tag}/index/sha256/{digest[7:]}/link"), digest.encode())
    result = reg.apply(tmp_path / "p.json")
    assert revisions[0] in {path for path, _ in result.skipped}
    assert 0 < result.moved < len(plan.targets)
    manifest = reg.bucket.get(reg.storage.key(f"docker/registry/v2/{blob_data(Digest(digest))}"))
    kept = reg.objects()
    for d in [digest, *(b["digest"] for b in json.loads(manifest).get("layers", []))]:
        assert any(k.endswith(f"blobs/sha256/{d[7:9]}/{d[7:]}/data") for k in kept), d


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        (["{k},,1000,abc"], "a row has no size or no time"),
        (["{k},5,,abc"], "a row has no size or no time"),
        (["{k},5,1000,abc", "{k},6,1001,abd"], "twice: not one snapshot"),
    ],
)
def test_a_listing_with_holes_or_twice_a_key_is_refused(
    bucket: MemoryBucket, tmp_path: Path, rows: list[str], said: str
) -> None:
    storage = bucket.storage
    key = storage.key("docker/registry/v2/repositories/r/_layers/sha256/ab/link")
    path = tmp_path / "l.csv"
    path.write_text("\n".join(["key,size,last_modified,etag", *(r.format(k=key) for r in rows)]))
    with pytest.raises(StorageError, match=said), Listing(path, storage) as listing:
        listing.objects(storage.key("docker/registry/v2/repositories/r/"))


def test_a_listing_plans_as_the_scan_on_a_hostile_scale_tree(tmp_path: Path) -> None:
    """The scale sample (indexes, re-pushed tags) with keys a plan cannot name, a link
    naming another digest, a link with no MD5 (read) and a manifest that is not one:
    the listing's plan is the scan's, for every request below (nothing more removed)."""
    build_scale(tmp_path / "fs", repos=4, tags=6, pushes=3, index_every=3, repush_every=2)
    bucket = MemoryBucket("s3", clock=lambda: NOW.timestamp() - 86400, part_size=40)
    upload_tree(tmp_path / "fs", bucket)
    storage = bucket.storage
    v2 = "docker/registry/v2"
    revisions = sorted(k for k in bucket.snapshot("") if "/_manifests/revisions/" in k)
    garbage = revisions[0].split("/")[-2]
    for rel, data in (
        (f"{v2}/repositories/team0/a\x01b/link", b"sha256:0"),
        (f"{v2}/repositories/team0/{'x' * 300}/link", b"sha256:0"),
        (f"{v2}/repositories/team0//c/link", b"sha256:0"),
        (f"{v2}/repositories/team1/svc1/_layers/sha256/{'ab' * 32}/link", b"sha256:" + b"cd" * 32),
        (f"{v2}/blobs/sha256/{garbage[:2]}/{garbage}/data", b"not a manifest"),
    ):
        bucket.put(storage.key(rel), data)
    bucket.copy(revisions[1], revisions[1], 71)  # copied part by part: no MD5, so it is read
    assert bucket.snapshot(revisions[1])[revisions[1]].content is None
    made = lister.write(storage, tmp_path / "l.parquet")
    requests = [
        Selection(untagged=("*",), gc=True),
        Selection(images=(ImageSpec.parse("team0/*"),), gc=True),
        Selection(images=(ImageSpec.parse("team1/svc1:v1"),), untagged=("team1/*",)),
    ]
    for sel in requests:
        with Listing(made.path, storage) as listing:
            got = drafted(storage=listed(storage, listing), selection=sel)
        assert _decided(got) == _decided(drafted(storage=storage, selection=sel))
