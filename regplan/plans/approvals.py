"""Approvals kept beside the plan file, never in it.

``regplan approve PLAN`` writes ``PLAN.approval-<key>.sig`` (one small file per
approver, as minisign, cosign and ``ssh-keygen -Y`` keep detached signatures): the
plan's bytes, which a change ticket pins by SHA-256, stay as they were however many
people approve. With an SSH key the file is the armored SSHSIG that
``ssh-keygen -Y sign -n regplan-plan`` writes for ``regplan digest PLAN`` (and one
written so is read the same); with a regplan key, a small JSON document. ``show``,
``verify`` and ``apply`` find the files there without being told.
"""

from __future__ import annotations

import glob
import json
import os
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import attrs

from regplan.errors import PlanWriteError, SignatureError
from regplan.plans import sshsig
from regplan.plans.plan import Plan, Signature
from regplan.plans.planfile import PlanStream
from regplan.plans.signing import (
    Checked,
    Entry,
    SigningKey,
    TrustedKey,
    body_digest,
    check,
    entries,
    keyid,
    sign_body,
    verify_stream,
)

FORMAT = "regplan.approval"
VERSION = 1
MAX_BYTES = 64 * 1024
"""An approval file is a few hundred bytes: anything larger is not one."""


def path_for(plan: Path, keyid: str) -> Path:
    """Where the approval by ``keyid`` of ``plan`` is kept (an SSH fingerprint's
    base64 made safe for a file name)."""
    short = keyid.partition(":")[2][:16].replace("/", "_").replace("+", "-")
    return plan.with_name(f"{plan.name}.approval-{short}.sig")


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
                data = f.read(MAX_BYTES + 1)
                if sshsig.is_armored(data[:100].decode("ascii", "replace")):
                    return _ssh_entry(name, data, os.fstat(f.fileno()).st_mtime)
                doc = _parse(data)
            except OSError:
                doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return Entry(raw={}, source=name, problem="not a regplan approval file")
    if doc.get("plan_id") != plan_id:
        return Entry(raw=doc.get("signature"), source=name, problem="an approval of another plan")
    return Entry(raw=doc.get("signature"), source=name)


def _ssh_entry(name: str, data: bytes, mtime: float) -> Entry:
    """An SSHSIG approval (``ssh-keygen -Y sign`` wrote it, or ``regplan approve``): its
    signer is whoever the allowed signers say holds the key inside; its time, the file's."""
    if len(data) > MAX_BYTES:
        return Entry(raw={}, source=name, problem="not a regplan approval file")
    text = data.decode("ascii", "replace")
    try:
        keyid = sshsig.fingerprint(sshsig.parse(text).public_blob)
    except sshsig.SshsigError as e:
        return Entry(raw={}, source=name, problem=f"not a valid SSH signature ({e})")
    signed_at = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raw = {"keyid": keyid, "role": "approver", "signer": "", "signed_at": signed_at, "sig": text}
    return Entry(raw=raw, source=name)


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
    if sshsig.is_armored(signature.sig):
        data = signature.sig.encode()  # what ssh-keygen -Y sign writes, byte for byte
    else:
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
    key: SigningKey,
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
        every, _ = verify_stream(stream, trusted, detached=beside(stream))
        stream.check_items()
        header = stream.header
        mine = keyid(key)
        signed = {c.keyid for c in every}
        if mine in signed:
            raise SignatureError(f"{path} is already signed by {mine}")
        signature = sign_body(body_digest(stream), key, role="approver", signer=signer, now=now)
    return header, write(path, header.plan_id, signature)
