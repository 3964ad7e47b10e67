"""Ed25519 keys, plan signatures and their verification.

A signature covers ``regplan-plan-v1 NUL hex(sha256(canonical(body))) NUL
canonical(meta)`` where body is every plan field but ``signatures`` and meta is
the signature's own ``keyid``, ``role``, ``signer`` and ``signed_at``: an edit
anywhere, or a changed role, breaks it. The body is hashed first, piece by
piece, so that a plan of half a million targets is signed and checked without
ever holding its canonical form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from regplan import codec
from regplan.errors import KeyFileError, SignatureError
from regplan.plan import Plan, Signature

if TYPE_CHECKING:
    from regplan.planfile import PlanStream

DOMAIN = b"regplan-plan-v1"
PUBLIC_PREFIX = "regplan-ed25519"
ROLES = ("planner", "approver")


def keyid_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


@attrs.frozen
class TrustedKey:
    keyid: str
    key: Ed25519PublicKey = attrs.field(eq=False)
    source: str


def keygen(path: Path, *, comment: str) -> str:
    """Write a new private key (0600, never overwritten) and ``path.pub``; return the keyid."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if os.path.lexists(p):  # a dangling symlink too: never write through one
            raise KeyFileError(f"{p} exists; refusing to overwrite a key")
    public = private.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    line = f"{PUBLIC_PREFIX} {base64.b64encode(raw).decode()} {comment}".rstrip()
    written: list[Path] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for p, data, mode in ((path, pem, 0o600), (pub_path, (line + "\n").encode(), 0o644)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            written.append(p)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as e:
        for p in written:  # no half key pair left behind
            p.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write key {e.filename or path}: {e.strerror}") from None
    return keyid_of(public)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read key {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def load_trusted(path: Path) -> TrustedKey:
    """Read a ``.pub`` line written by keygen."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read public key {path}: {e}") from None
    fields = text.split()
    if len(fields) < 2 or fields[0] != PUBLIC_PREFIX:
        raise KeyFileError(f"{path} is not a regplan public key (expected '{PUBLIC_PREFIX} …')")
    try:
        raw = base64.b64decode(fields[1], validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise KeyFileError(f"{path}: malformed Ed25519 public key") from None
    return TrustedKey(keyid=keyid_of(key), key=key, source=str(path))


def raw_body_digest(raw: dict[str, Any]) -> bytes:
    """What a signature covers of a plan as read from its file: two plans with the
    same body digest are the same plan, whatever their signatures and formatting."""
    return codec.hex_sha256(codec.raw_body_chunks(raw))


def _message(body_digest: bytes, meta: dict[str, str]) -> bytes:
    return DOMAIN + b"\0" + body_digest + b"\0" + codec.canonical(meta)


def sign(plan: Plan, key: Ed25519PrivateKey, *, role: str, signer: str, now: datetime) -> Plan:
    """Return the plan with one more signature; the body is untouched."""
    body = codec.hex_sha256(codec.body_chunks(plan))
    signature = sign_body(body, key, role=role, signer=signer, now=now)
    return attrs.evolve(plan, signatures=(*plan.signatures, signature))


def sign_body(
    body: bytes, key: Ed25519PrivateKey, *, role: str, signer: str, now: datetime
) -> Signature:
    """A signature over a plan's body digest (``body_digest``, ``raw_body_digest``)."""
    if role not in ROLES:
        raise ValueError(role)
    meta = {
        "keyid": keyid_of(key.public_key()),
        "role": role,
        "signer": signer,
        "signed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    sig = base64.b64encode(key.sign(_message(body, meta))).decode()
    return Signature(sig=sig, **meta)


def verify(
    raw: dict[str, Any], trusted: Sequence[TrustedKey], *, required: int = 1
) -> list[TrustedKey]:
    """Check the raw plan's signatures; return the distinct trusted keys that signed it.

    Works on the raw JSON object, before structuring, so that any edit of any
    value fails here with a signature error.
    """
    return verify_body(raw.get("signatures"), lambda: raw_body_digest(raw), trusted, required)


def body_digest(stream: PlanStream) -> bytes:
    """``raw_body_digest`` of a plan read as a stream (computed once per stream)."""
    return stream.body_digest


def verify_stream(
    stream: PlanStream, trusted: Sequence[TrustedKey], *, required: int = 1
) -> list[TrustedKey]:
    """``verify`` of a plan read as a stream: the body is hashed list item by list item."""
    return verify_body(
        stream.raw_header.get("signatures"),
        lambda: body_digest(stream),
        trusted,
        required,
    )


def verify_body(
    sigs: object,
    body_digest: Callable[[], bytes],
    trusted: Sequence[TrustedKey],
    required: int,
) -> list[TrustedKey]:
    """The signature entries ``sigs`` against the body's digest (computed once it is
    known that there is something to check)."""
    if not trusted:
        raise SignatureError("no trusted keys given (--trust or REGPLAN_TRUST)")
    by_id = {k.keyid: k for k in trusted}
    if not isinstance(sigs, list) or not sigs:
        raise SignatureError("the plan is not signed")
    body = body_digest()
    valid: dict[str, TrustedKey] = {}
    unknown: list[str] = []
    for entry in sigs:
        fields = ("keyid", "role", "signer", "signed_at", "sig")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in fields):
            raise SignatureError("malformed signature entry in the plan")
        key = by_id.get(entry["keyid"])
        if key is None:
            unknown.append(f"{entry['keyid']} ({entry['signer']})")
            continue
        meta = {f: entry[f] for f in fields[:4]}
        try:
            key.key.verify(base64.b64decode(entry["sig"], validate=True), _message(body, meta))
        except (InvalidSignature, ValueError, binascii.Error):
            raise SignatureError(
                f"signature by {entry['keyid']} ({entry['signer']}) does not match: "
                "the plan was changed after it was signed"
            ) from None
        valid[key.keyid] = key
    if len(valid) < required:
        others = f"; signed by untrusted {', '.join(unknown)}" if unknown else ""
        raise SignatureError(
            f"{len(valid)} valid signature(s) from trusted keys, {required} required{others}"
        )
    return list(valid.values())


def trusted_from(paths: Iterable[Path]) -> list[TrustedKey]:
    return [load_trusted(p) for p in paths]
