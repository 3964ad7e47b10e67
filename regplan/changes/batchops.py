"""S3 Batch Operations for an apply's copies (issue #36, part 5): what regplan exports
(the job's CSV manifest, its ``create-job`` request, and its own record of every source
as listed), and what it makes of the job's completion report. Pure: text in, text and
decisions out; reading and writing the bucket is the apply's (docs/scale-moves.md).

A Batch Operations Copy job copies ``bucket,key`` rows to ``TargetKeyPrefix + key``
(one prefix for the whole job: it cannot rename a key), without an ETag condition
(``UnModifiedSinceConstraint`` is the nearest, to the second), objects of at most 5 GB,
and deletes nothing. So a copy the report calls succeeded proves nothing by itself:
each one is checked against the source as recorded here (size, ETag, time), and
anything missing, failed or differing is not moved (:func:`verdict`).
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import attrs

from regplan.errors import ApplyError

MAX_COPY = 5 * 1024**3
"""The largest object a Batch Operations Copy (CopyObject) copies; larger ones regplan
copies part by part."""

HEADER = "# regplan batch export"
STATUSES = ("succeeded", "failed")


@attrs.frozen(kw_only=True)
class Source:
    """One object of the registry as listed at export time."""

    key: str
    size: int
    etag: str
    """As listed, without quotes."""
    mtime: float


@attrs.frozen(kw_only=True)
class Export:
    """What one export asked the job to copy, and what it left to regplan."""

    export_id: str
    bucket: str
    prefix: str
    """The job's TargetKeyPrefix: a source ``k`` is copied to ``prefix + k``."""
    at: float
    """When the sources were listed (the job's UnModifiedSinceConstraint)."""
    batch: tuple[Source, ...]
    large: tuple[Source, ...] = ()
    """Over MAX_COPY: not in the manifest, copied by regplan."""

    def target(self, source: str) -> str:
        return self.prefix + source


def export(
    export_id: str, bucket: str, prefix: str, at: float, sources: Iterable[Source]
) -> Export:
    """Split the sources into the job's and regplan's (over 5 GB)."""
    if not prefix.endswith("/"):
        raise ValueError("a target prefix ends with /")
    listed = tuple(sources)
    return Export(
        export_id=export_id,
        bucket=bucket,
        prefix=prefix,
        at=at,
        batch=tuple(s for s in listed if s.size <= MAX_COPY),
        large=tuple(s for s in listed if s.size > MAX_COPY),
    )


def manifest_csv(e: Export) -> str:
    """The job's manifest: ``bucket,key`` per object, the key URL-encoded as AWS requires."""
    return "".join(f"{e.bucket},{quote(s.key, safe='/')}\n" for s in e.batch)


def record_text(e: Export) -> str:
    """regplan's own record of the export: what each source was when listed."""
    head = f"{HEADER}\t{e.export_id}\t{e.bucket}\t{e.prefix}\t{e.at!r}\n"
    rows = (
        f"{kind}\t{quote(s.key, safe='/')}\t{s.size}\t{s.etag}\t{s.mtime!r}\n"
        for kind, group in (("B", e.batch), ("L", e.large))
        for s in group
    )
    return head + "".join(rows)


def parse_record(text: str, where: str) -> Export:
    """An export's record as :func:`record_text` wrote it; ApplyError naming the line."""
    lines = text.splitlines()
    head = lines[0].split("\t") if lines else []
    if len(head) != 5 or head[0] != HEADER:
        raise ApplyError(f"{where} is not a regplan batch export record")
    batch: list[Source] = []
    large: list[Source] = []
    for n, line in enumerate(lines[1:], 2):
        f = line.split("\t")
        s = _source(f) if len(f) == 5 and f[0] in ("B", "L") else None
        if s is None:
            raise ApplyError(f"{where} line {n} is not a row regplan writes")
        (batch if f[0] == "B" else large).append(s)
    try:
        at = float(head[4])
    except ValueError:
        raise ApplyError(f"{where} line 1 is not a row regplan writes") from None
    return Export(
        export_id=head[1],
        bucket=head[2],
        prefix=head[3],
        at=at,
        batch=tuple(batch),
        large=tuple(large),
    )


def _source(f: Sequence[str]) -> Source | None:
    try:
        return Source(key=unquote(f[1]), size=int(f[2]), etag=f[3], mtime=float(f[4]))
    except ValueError:
        return None


def job_request(
    e: Export,
    *,
    account: str,
    role_arn: str,
    manifest_key: str,
    manifest_etag: str,
    report_prefix: str,
) -> dict[str, Any]:
    """``aws s3control create-job --cli-input-json``: one Copy of every manifest row to
    ``prefix + key`` in the same bucket, refused by S3 for a source written since the
    export (UnModifiedSinceConstraint), a report of every task."""
    return {
        "AccountId": account,
        "ConfirmationRequired": True,
        "Operation": {
            "S3PutObjectCopy": {
                "TargetResource": f"arn:aws:s3:::{e.bucket}",
                "TargetKeyPrefix": e.prefix.rstrip("/"),
                "MetadataDirective": "COPY",
                "UnModifiedSinceConstraint": _iso(e.at),
            }
        },
        "Manifest": {
            "Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
            "Location": {
                "ObjectArn": f"arn:aws:s3:::{e.bucket}/{manifest_key}",
                "ETag": manifest_etag,
            },
        },
        "Report": {
            "Bucket": f"arn:aws:s3:::{e.bucket}",
            "Prefix": report_prefix.rstrip("/"),
            "Format": "Report_CSV_20180820",
            "Enabled": True,
            "ReportScope": "AllTasks",
        },
        "Priority": 10,
        "RoleArn": role_arn,
        "ClientRequestToken": e.export_id,
        "Description": f"regplan export {e.export_id}",
    }


def job_json(request: Mapping[str, Any]) -> str:
    return json.dumps(request, indent=2, sort_keys=True) + "\n"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the completion report -------------------------------------------------------


@attrs.frozen(kw_only=True)
class Row:
    """One task of a completion report: bucket, key, version, status, error code."""

    bucket: str
    key: str
    status: str
    error: str = ""


def parse_report(text: str, where: str) -> list[Row]:
    """A Report_CSV_20180820 file: ``bucket,key,version,status,error code,HTTP status,
    message`` (the key URL-encoded); ApplyError naming the first line that is not."""
    out = []
    for n, f in enumerate(csv.reader(io.StringIO(text)), 1):
        if not f:
            continue
        status = f[3].lower() if len(f) >= 4 else ""
        if status not in STATUSES or not f[0] or not f[1]:
            raise ApplyError(
                f"{where} line {n} is not a Batch Operations completion report row "
                "(bucket,key,version,status,...)"
            )
        out.append(Row(bucket=f[0], key=unquote(f[1]), status=status, error=_at(f, 4)))
    return out


def _at(fields: Sequence[str], i: int) -> str:
    return fields[i] if len(fields) > i else ""


def statuses(e: Export, rows: Iterable[Row], where: str) -> dict[str, Row]:
    """Each exported source's report row; refuse a report of another export (a bucket or
    a key the manifest did not name), naming the first such row."""
    wanted = {s.key for s in e.batch}
    out: dict[str, Row] = {}
    for r in rows:
        if r.bucket != e.bucket or r.key not in wanted:
            raise ApplyError(
                f"{where} reports s3://{r.bucket}/{quote(r.key, safe='/')[:200]}, which export "
                f"{e.export_id} did not ask to copy: the report of another export? nothing "
                "was deleted"
            )
        if r.status == "succeeded" or r.key not in out:
            out[r.key] = r  # a task retried: succeeded wins
    return out


# -- what each exported object is now ---------------------------------------------


@attrs.frozen
class Seen:
    """An object as listed now."""

    size: int
    etag: str
    mtime: float


class Verdict(enum.Enum):
    MOVED = "moved"
    """The copy is the source as exported: the source may be deleted."""
    DONE = "done"
    """The source is gone and the copy is there: an earlier run deleted it."""
    COPY = "copy"
    """No proven copy (failed, missing, differing): regplan copies it, on the condition
    that the source is still the version exported."""
    CHANGED = "changed"
    """The source is not the one exported (written since): nothing of it moves."""
    GONE = "gone"
    """Neither source nor copy: vanished since the export."""


def unchanged(s: Source, now: Seen) -> bool:
    """``now`` is the version exported: same size, ETag and time (a write since changes
    the time even where it writes the same bytes)."""
    return now.size == s.size and now.etag == s.etag and now.mtime == s.mtime


def proven(s: Source, copy: Seen, at: float) -> bool:
    """``copy`` is a copy of the exported version: the same size, written after the
    export, and the same ETag where the source's is an MD5 (a multipart ETag, with a
    ``-``, is not the copy's: CopyObject writes one part)."""
    if copy.size != s.size or copy.mtime < int(at):
        return False
    return "-" in s.etag or copy.etag == s.etag


def verdict(s: Source, source: Seen | None, copy: Seen | None, at: float) -> Verdict:
    """What happens to one exported object, from what is there now (never the report
    alone: the job copied whatever the key held when it reached it)."""
    if source is None:
        return Verdict.DONE if copy is not None and proven(s, copy, at) else Verdict.GONE
    if not unchanged(s, source):
        return Verdict.CHANGED
    if copy is not None and proven(s, copy, at):
        return Verdict.MOVED
    return Verdict.COPY


def readme(e: Export, *, manifest_key: str, report_prefix: str, plan: str, directory: str) -> str:
    """What to run, in order, and what comes next (written beside the manifest)."""
    return README.format(
        n=len(e.batch),
        large=len(e.large),
        bucket=e.bucket,
        prefix=e.prefix,
        manifest_key=manifest_key,
        report_prefix=report_prefix,
        plan=plan,
        dir=directory,
        export_id=e.export_id,
    )


README = """\
regplan batch export {export_id}
===============================

{n} object(s) for one S3 Batch Operations Copy job; {large} over 5 GB are left to
regplan. Keep the registry read-only until step 4 has finished.

1. aws s3 cp {dir}/manifest.csv s3://{bucket}/{manifest_key}
2. put that upload's ETag, your account and a role S3 Batch Operations may assume
   into {dir}/job.json (ACCOUNT, ROLE_ARN, MANIFEST_ETAG), then
   aws s3control create-job --cli-input-json file://{dir}/job.json
   aws s3control update-job-status --account-id ACCOUNT --job-id JOB \\
       --requested-job-status Ready
3. when the job is Complete (or Failed), download its report:
   aws s3 cp --recursive s3://{bucket}/{report_prefix}/job-JOB/results/ report/
4. regplan apply {plan} --from-batch-report report/

Step 4 checks every copy under s3://{bucket}/{prefix} against the source as listed
here (size, ETag, time): what is missing, failed or differs is copied by regplan on
the condition that the source is unchanged, or left in place and named. Then it deletes
the sources (Batch Operations deletes nothing). Until then, any other apply or a
rollback is refused; `regplan rollback` undoes this apply at any point.
"""
