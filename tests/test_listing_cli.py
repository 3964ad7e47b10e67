"""regplan list and plan --listing on a real S3 API (moto): the listing made from the
bucket (real ETags) plans what listing the bucket plans; the plan records the listing;
a --gc plan from a listing older than --gc-min-age is refused; each refusal one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.storage.s3.bucket import S3Storage
from tests.helpers import write_keys


@pytest.fixture
def bucket(demo_bucket: S3Storage) -> S3Storage:
    return demo_bucket


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _decided(path: Path) -> dict[str, object]:
    raw = json.loads(path.read_text())
    return {k: raw[k] for k in ("targets", "kept", "problems", "fingerprint", "summary")}


def test_a_plan_from_regplan_list_is_the_plan_of_the_bucket(
    bucket: S3Storage, tmp_path: Path
) -> None:
    key = write_keys(tmp_path)[0]
    listing = tmp_path / "listing.parquet"
    made = run("list", "--root", bucket.root, "-o", str(listing), "--json")
    assert made.exit_code == 0, made.output
    said = json.loads(made.output)
    assert said["keys"] > 50
    request = ["--untagged", "*", "--gc", "--gc-min-age", "1h", "-q"]
    plain, listed = tmp_path / "plain.json", tmp_path / "listed.json"
    base = ["plan", "--root", bucket.root, "--key", str(key)]
    assert run(*base, "-o", str(plain), *request).exit_code == 0
    r = run(*base, "-o", str(listed), "--listing", str(listing), *request)
    assert r.exit_code == 0, r.output
    assert _decided(listed) == _decided(plain)
    record = json.loads(listed.read_text())["request"]["listing"]
    assert record == {
        "file": "listing.parquet",
        "sha256": hashlib.sha256(listing.read_bytes()).hexdigest(),
        "format": "regplan",
        "listed_at": said["listed_at"],
    }
    assert f"--listing={listing}" in json.loads(listed.read_text())["request"]["argv"]
    assert "listing" not in json.loads(plain.read_text())["request"]


def test_gc_from_a_listing_older_than_gc_min_age_is_refused(
    bucket: S3Storage, tmp_path: Path
) -> None:
    key = write_keys(tmp_path)[0]
    listing = tmp_path / "l.csv"
    rows = ["key,size,last_modified,etag", f"{bucket.rootdirectory}/docker/x,1,1000,abc"]
    listing.write_text("\n".join(rows) + "\n")  # dated 1970: decades old
    base = ["plan", "--root", bucket.root, "--key", str(key), "--listing", str(listing)]
    for extra in (["--gc"], ["--gc", "--gc-min-age", "30d"]):
        r = run(*base, *extra)
        assert r.exit_code == 1, r.output
        assert r.output.startswith("Error: --listing ") and r.output.count("\n") == 1
        assert "needs --gc-min-age of at least that" in r.output


def test_listing_a_filesystem_is_one_line(demo_root: Path, tmp_path: Path) -> None:
    key = write_keys(tmp_path)[0]
    listing = tmp_path / "l.csv"
    listing.write_text("key,size,last_modified,etag\n")
    r = run("plan", "--root", str(demo_root), "--key", str(key), "--listing", str(listing), "--gc")
    assert r.exit_code == 1
    assert r.output == (
        "Error: --listing lists an object store (s3://, az://, gs://): a filesystem is walked\n"
    )
    r = run("list", "--root", str(demo_root), "-o", str(tmp_path / "l.parquet"))
    assert r.exit_code == 1
    assert r.output.count("\n") == 1 and "plan walks a filesystem" in r.output
