"""S3 Batch Operations export and completion report (regplan/changes/batchops.py): the
pure rules on small tables, then on moto (a real S3 server) the job simulated as AWS
runs it (CopyObject of each manifest row to the target prefix, a Report_CSV_20180820
file written), every copy judged from what the bucket holds after it."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any
from urllib.parse import unquote

import pytest

from regplan.changes import batchops
from regplan.changes.batchops import Export, Seen, Source, Verdict, verdict
from regplan.errors import ApplyError
from tests.s3server import S3Server, client

AT = 1_700_000_000.0
SRC = Source(key="r/docker/registry/v2/blobs/sha256/ab/abc/data", size=10, etag="e" * 32, mtime=AT)


def _export(*sources: Source) -> Export:
    return batchops.export("x1", "bkt", "r/regplan-state/batch/x1/", AT, sources or (SRC,))


# -- pure rules -------------------------------------------------------------------


def test_over_5_gb_is_left_to_regplan_and_out_of_the_manifest() -> None:
    big = Source(key="k/big", size=batchops.MAX_COPY + 1, etag="f-2", mtime=AT)
    edge = Source(key="k/edge", size=batchops.MAX_COPY, etag="a", mtime=AT)
    e = _export(SRC, big, edge)
    assert e.large == (big,)
    assert batchops.manifest_csv(e) == f"bkt,{SRC.key}\nbkt,k/edge\n"


def test_manifest_keys_are_url_encoded() -> None:
    odd = Source(key="r/a b,c%d/é", size=1, etag="a", mtime=AT)
    row = batchops.manifest_csv(_export(odd)).strip()
    bucket, key = row.split(",")
    assert bucket == "bkt" and unquote(key) == odd.key and "," not in key and " " not in key


def test_record_round_trips_and_refuses_other_text() -> None:
    big = Source(key="k/big", size=batchops.MAX_COPY + 1, etag="f-2", mtime=AT + 0.5)
    e = _export(SRC, big)
    assert batchops.parse_record(batchops.record_text(e), "rec") == e
    with pytest.raises(ApplyError, match="rec is not a regplan batch export record"):
        batchops.parse_record("bkt,key\n", "rec")
    bad = batchops.record_text(e) + "B\tkey\tten\te\t1.0\n"
    with pytest.raises(ApplyError, match="rec line 4 is not a row regplan writes"):
        batchops.parse_record(bad, "rec")


def test_job_request_copies_to_the_prefix_without_a_later_write() -> None:
    req = batchops.job_request(
        _export(),
        account="1",
        role_arn="arn:r",
        manifest_key="m.csv",
        manifest_etag="E",
        report_prefix="rep/",
    )
    copy = req["Operation"]["S3PutObjectCopy"]
    assert copy["TargetKeyPrefix"] == "r/regplan-state/batch/x1"
    assert copy["UnModifiedSinceConstraint"] == "2023-11-14T22:13:20Z"
    assert req["Manifest"]["Spec"]["Fields"] == ["Bucket", "Key"]
    assert req["Report"]["ReportScope"] == "AllTasks"
    assert json.loads(batchops.job_json(req)) == req


def test_verdicts() -> None:
    same = Seen(SRC.size, SRC.etag, SRC.mtime)
    copy = Seen(SRC.size, SRC.etag, AT + 60)
    assert verdict(SRC, same, copy, AT) == Verdict.MOVED
    assert verdict(SRC, same, None, AT) == Verdict.COPY
    assert verdict(SRC, same, Seen(SRC.size, "other", AT + 60), AT) == Verdict.COPY
    assert verdict(SRC, same, Seen(SRC.size, SRC.etag, AT - 60), AT) == Verdict.COPY  # stale
    assert verdict(SRC, Seen(SRC.size, SRC.etag, AT + 5), copy, AT) == Verdict.CHANGED
    assert verdict(SRC, Seen(11, "x", AT), copy, AT) == Verdict.CHANGED
    assert verdict(SRC, None, copy, AT) == Verdict.DONE
    assert verdict(SRC, None, None, AT) == Verdict.GONE
    multipart = Source(key="k", size=10, etag="abc-3", mtime=AT)
    assert verdict(multipart, Seen(10, "abc-3", AT), Seen(10, "md5", AT + 1), AT) == Verdict.MOVED


def test_report_rows_and_refusals() -> None:
    e = _export()
    text = f'bkt,{SRC.key},,failed,500,500,"oops, once"\nbkt,{SRC.key},,succeeded,200,,\n'
    rows = batchops.parse_report(text, "rep.csv")
    assert batchops.statuses(e, rows, "rep.csv")[SRC.key].status == "succeeded"
    with pytest.raises(ApplyError, match=r"rep\.csv line 1 is not a Batch Operations"):
        batchops.parse_report("Bucket,Key,VersionId,TaskStatus\n", "rep.csv")
    foreign = batchops.parse_report("bkt,r/other,,succeeded,200,,\n", "rep.csv")
    with pytest.raises(ApplyError, match="did not ask to copy: the report of another export"):
        batchops.statuses(e, foreign, "rep.csv")
    other_bucket = batchops.parse_report(f"b2,{SRC.key},,succeeded,200,,\n", "rep.csv")
    with pytest.raises(ApplyError, match="another export"):
        batchops.statuses(e, other_bucket, "rep.csv")


# -- on moto: the job as AWS runs it ----------------------------------------------------


def _listed(c: Any, bucket: str, prefix: str) -> dict[str, Seen]:
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", ()):
            out[o["Key"]] = Seen(o["Size"], o["ETag"].strip('"'), o["LastModified"].timestamp())
    return out


def _run_job(c: Any, e: Export, fail: set[str]) -> str:
    """What the job does server side: CopyObject of each manifest row to prefix + key
    (no ETag condition), and its completion report."""
    out = io.StringIO()
    w = csv.writer(out)
    for line in batchops.manifest_csv(e).splitlines():
        bucket, key = line.split(",")
        source = unquote(key)
        if source in fail:
            w.writerow([bucket, key, "", "failed", "500", "500", "InternalError"])
            continue
        c.copy_object(
            Bucket=bucket, Key=e.target(source), CopySource={"Bucket": bucket, "Key": source}
        )
        w.writerow([bucket, key, "", "succeeded", "200", "", "Successful"])
    return out.getvalue()


def test_job_on_moto_judged_from_the_bucket(s3server: S3Server) -> None:
    storage = s3server.storage()
    c, bucket = client(storage), storage.bucket
    root = storage.key("docker/registry/v2/")
    keys = [f"{root}blobs/sha256/{i:02x}/{i:064x}/data" for i in range(4)]
    for i, k in enumerate(keys):
        c.put_object(Bucket=bucket, Key=k, Body=bytes([i]) * (100 + i))
    listed = _listed(c, bucket, root)
    at = time.time()
    sources = [Source(key=k, size=s.size, etag=s.etag, mtime=s.mtime) for k, s in listed.items()]
    e = batchops.export("x1", bucket, storage.key("regplan-state/batch/x1/"), at, sources)
    e = batchops.parse_record(batchops.record_text(e), "rec")  # as read back from DIR
    time.sleep(1.1)  # S3 times are to the second: a write after the export shows
    c.put_object(Bucket=bucket, Key=keys[2], Body=b"pushed since the export")
    report = _run_job(c, e, fail={keys[1]})
    rows = batchops.statuses(e, batchops.parse_report(report, "rep.csv"), "rep.csv")
    assert {k: r.status for k, r in rows.items() if r.status == "failed"} == {keys[1]: "failed"}
    c.delete_object(Bucket=bucket, Key=keys[3])  # an earlier run deleted it after its copy
    now = _listed(c, bucket, storage.key(""))
    got = {s.key: verdict(s, now.get(s.key), now.get(e.target(s.key)), e.at) for s in e.batch}
    assert got == {
        keys[0]: Verdict.MOVED,
        keys[1]: Verdict.COPY,  # failed: no copy
        keys[2]: Verdict.CHANGED,  # the job copied the new bytes: not the one exported
        keys[3]: Verdict.DONE,
    }
