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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from regplan.errors import PlanWriteError
from regplan.plans.plan import Signature
from regplan.plans.signing import Checked, Entry, TrustedKey, body_digest, check, entries

if TYPE_CHECKING:
    from regplan.plans.planfile import PlanStream

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
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read(MAX_BYTES + 1)
        doc = json.loads(data) if len(data) <= MAX_BYTES else None
    except (OSError, ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return Entry(raw={}, source=name, problem="not a regplan approval file")
    if doc.get("plan_id") != plan_id:
        return Entry(raw=doc.get("signature"), source=name, problem="an approval of another plan")
    return Entry(raw=doc.get("signature"), source=name)


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
