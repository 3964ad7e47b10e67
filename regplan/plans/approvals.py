"""Approvals kept beside the plan file, never in it.

``regplan approve PLAN`` writes ``PLAN.approval-<key>.sig`` (one small JSON
file per approver, as minisign, cosign and ``ssh-keygen -Y`` keep detached
signatures): the plan's bytes, which a change ticket pins by SHA-256, stay as
they were however many people approve. ``show``, ``verify`` and ``apply`` find
the files there without being told.
"""

from __future__ import annotations

import glob
import json
import os
import stat
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from regplan.errors import PlanWriteError, SignatureError
from regplan.plans.plan import Plan, Signature
from regplan.plans.planfile import PlanStream
from regplan.plans.signing import (
    Checked,
    Entry,
    TrustedKey,
    body_digest,
    check,
    entries,
    keyid_of,
    sign_body,
    verify_stream,
)

FORMAT = "regplan.approval"
VERSION = 1
MAX_BYTES = 64 * 1024
"""An approval file is a few hundred bytes: anything larger is not one."""


def path_for(plan: Path, keyid: str) -> Path:
    """Where the approval by ``keyid`` of ``plan`` is kept."""
    return plan.with_name(f"{plan.name}.approval-{keyid.partition(':')[2][:16]}.sig")


def find(plan: Path, plan_id: str) -> list[Entry]:
    """Every approval file beside ``plan``, as signature entries (sorted by name). A
    file that is not an approval of this plan is an entry with its problem, so that a
    view shows it and a verification refuses it."""
    found = plan.parent.glob(glob.escape(plan.name) + ".approval-*.sig")
    return [_read(p, plan_id) for p in sorted(found)]


def _read(path: Path, plan_id: str) -> Entry:
    name = path.name
    doc: object = None
    try:
        # never blocks (a FIFO), never follows a link, reads a regular file only
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        fd = -1
    if fd < 0:
        kind = _not_regular(path, None)
        if kind is not None:
            return _ignored(name, kind)
    else:
        kind = _not_regular(path, os.fstat(fd).st_mode)
        if kind is not None:
            os.close(fd)
            return _ignored(name, kind)
        with os.fdopen(fd, "rb") as f:
            try:
                doc = _parse(f.read(MAX_BYTES + 1))
            except OSError:
                doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return Entry(raw={}, source=name, problem="not a regplan approval file")
    if doc.get("plan_id") != plan_id:
        return Entry(raw=doc.get("signature"), source=name, problem="an approval of another plan")
    return Entry(raw=doc.get("signature"), source=name)


def _parse(data: bytes) -> object:
    try:
        return json.loads(data) if len(data) <= MAX_BYTES else None
    except (ValueError, RecursionError):
        return None


KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def _not_regular(path: Path, mode: int | None) -> str | None:
    """What ``path`` is when it is not a regular file (None: it is one, or it cannot be
    told): ``mode`` from the open file, or, when it could not be opened, its lstat."""
    if mode is None:
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in KINDS if test(mode)), "not a file")


def _ignored(name: str, kind: str) -> Entry:
    """A path the approvals' glob found that is no file to read (never opened for a
    blocking read): shown, and not counted either way."""
    return Entry(raw={}, source=name, problem=f"not a regular file ({kind}): ignored", ignored=True)


def write(plan: Path, plan_id: str, signature: Signature) -> Path:
    """Write one approval beside ``plan`` (never over an existing file)."""
    path = path_for(plan, signature.keyid)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "plan_id": plan_id,
        "signature": attrs.asdict(signature),
    }
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise PlanWriteError(f"{path} exists: the plan is already approved by that key") from None
    except OSError as e:
        raise PlanWriteError(f"cannot write {path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path


def beside(stream: PlanStream) -> list[Entry]:
    """The approvals beside a plan being read (``find`` for its file and its plan id)."""
    return find(stream.path, str(stream.raw_header.get("plan_id")))


def checked(stream: PlanStream, trusted: Sequence[TrustedKey]) -> list[Checked]:
    """Every signature of a plan, in it and beside it, for a review: each not verified
    (no ``trusted`` keys), valid, invalid, or by an untrusted key."""
    found = [*entries(stream.raw_header.get("signatures")), *beside(stream)]
    return check(found, lambda: body_digest(stream), trusted)


def approve(
    path: Path,
    *,
    key: Ed25519PrivateKey,
    signer: str,
    now: datetime,
    trusted: Sequence[TrustedKey],
) -> tuple[Plan, Path]:
    """Approve: check every signature the plan has (in it and beside it) against
    ``trusted``, then write the approver's signature beside the plan
    (``approvals``); the plan file's bytes never change. The header and the
    approval file's path are returned."""
    if not trusted:
        raise SignatureError(
            "approve checks the plan's signatures before adding one: pass --trust with "
            "the planner's public key (and the other approvers')"
        )
    with PlanStream(path, snapshot=True) as stream:
        verify_stream(stream, trusted, detached=beside(stream))
        stream.check_items()
        header = stream.header
        keyid = keyid_of(key.public_key())
        signed = {s.keyid for s in header.signatures}
        signed |= {str(e.raw.get("keyid")) for e in beside(stream) if isinstance(e.raw, dict)}
        if keyid in signed:
            raise SignatureError(f"{path} is already signed by {keyid}")
        signature = sign_body(body_digest(stream), key, role="approver", signer=signer, now=now)
    return header, write(path, header.plan_id, signature)
