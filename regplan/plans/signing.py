"""Plan signatures and their verification: SSHSIG (``sshsig``, what OpenSSH checks)
by SSH keys trusted through an ``allowed_signers`` file, and regplan's own.

An SSH signature covers the plan's body digest (``regplan digest PLAN``: the hex
SHA-256 of the canonical body) in the ``regplan-plan`` namespace. A regplan
signature covers ``regplan-plan-v1 NUL hex(sha256(canonical(body))) NUL
canonical(meta)`` where body is every plan field but ``signatures`` and meta is
the signature's own ``keyid``, ``role``, ``signer`` and ``signed_at``: an edit
anywhere, or a changed role, breaks it. The body is hashed first, piece by
piece, so that a plan of half a million targets is signed and checked without
ever holding its canonical form.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from regplan.errors import KeyFileError, SignatureError
from regplan.plans import allowed, codec, sshcheck, sshsig
from regplan.plans.plan import Plan, Signature
from regplan.plans.sshkeys import SshKey

if TYPE_CHECKING:
    from regplan.plans.planfile import PlanStream

DOMAIN = b"regplan-plan-v1"
PUBLIC_PREFIX = "regplan-ed25519"
ROLES = ("planner", "approver")


def keyid_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


SigningKey = Ed25519PrivateKey | SshKey
"""A key that signs: regplan's own (PEM) or an SSH key (a file or ssh-agent's)."""


def keyid(key: SigningKey) -> str:
    return key.keyid if isinstance(key, SshKey) else keyid_of(key.public_key())


@attrs.frozen
class TrustedKey:
    keyid: str
    key: Ed25519PublicKey | None = attrs.field(eq=False)
    """A regplan key (None for an SSH key: ``ssh`` holds it)."""
    source: str
    name: str = ""
    """Who holds it, as the person who trusts the file says, not as a plan claims: an
    allowed_signers line's principals, or the comment after a ``.pub`` key."""
    ssh: allowed.Signer | None = None
    """An SSH key's line (principals, options); None for a regplan key."""


def keygen(path: Path, *, comment: str, ssh: bool = False) -> str:
    """Write a new private key (0600, never overwritten) and ``path.pub``; return the
    keyid. With ``ssh``, an OpenSSH key pair (unencrypted, as ``ssh-keygen -N ''``)."""
    if not comment.isprintable():
        raise KeyFileError("--comment must be one line of printable text")
    private = Ed25519PrivateKey.generate()
    pub_path = path.with_name(path.name + ".pub")
    for p in (path, pub_path):
        if os.path.lexists(p):  # a dangling symlink too: never write through one
            raise KeyFileError(f"{p} exists; refusing to overwrite a key")
    public = private.public_key()
    if ssh:
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        openssh = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        line = f"{openssh.decode()} {comment}".rstrip()
    else:
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
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
    if ssh:
        return sshsig.fingerprint(base64.b64decode(line.split()[1]))
    return keyid_of(public)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = read_regular(path, KEYS_LIMIT)
    except OSError as e:
        raise KeyFileError(f"cannot read key {path}: {e.strerror}") from None
    return private_of(data, path)


def private_of(data: bytes, path: Path) -> Ed25519PrivateKey:
    """A regplan key from the bytes of its PEM file ``path``."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def read_keys(path: Path) -> list[TrustedKey]:
    """Every key of a trust file, each line by its form: ``regplan-ed25519 BASE64 NAME``
    (as keygen writes it), an OpenSSH public key (``ssh-ed25519 AAAA… NAME``), or an
    ``allowed_signers`` line (``PRINCIPALS [OPTIONS] KEYTYPE BASE64``); blank lines and
    ``#`` comments skipped. A team may keep its keys in one file."""
    try:
        text = read_regular(path, KEYS_LIMIT).decode()
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read public key {path}: {e}") from None
    keys = [
        _trusted_line(line, f"{path}:{n}")
        for n, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not keys:
        raise KeyFileError(
            f"{path} holds no key (expected '{PUBLIC_PREFIX} …', OpenSSH public key or "
            "allowed_signers lines)"
        )
    return [attrs.evolve(k, source=str(path)) for k in keys]


def _trusted_line(line: str, where: str) -> TrustedKey:
    first = line.split(maxsplit=1)[0]
    if first == PUBLIC_PREFIX:
        return _key_line(line, where)
    try:
        signer = (
            allowed.public_line(line) if first in allowed.KEY_TYPES else allowed.parse_line(line)
        )
    except allowed.LineError as e:
        raise KeyFileError(f"{where}:{e.column}: {e}") from None
    keyid = sshsig.fingerprint(signer.blob)
    return TrustedKey(keyid=keyid, key=None, source=where, name=signer.principals, ssh=signer)


KEYS_LIMIT = 1024 * 1024
"""Bytes of a trust file at the most (a key's line is some 80 bytes)."""


def read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes, opened without waiting (a FIFO never blocks) and read to
    ``limit`` at the most; KeyFileError for anything else."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"))
            kind = next((k for test, k in kinds if test(mode)), "a device or socket")
            raise KeyFileError(f"{path} is not a regular file ({kind})")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise KeyFileError(f"{path} is larger than {limit} bytes: not a key file")
    return data


def _key_line(line: str, where: str) -> TrustedKey:
    fields = line.split()
    if len(fields) < 2 or fields[0] != PUBLIC_PREFIX:
        raise KeyFileError(f"{where} is not a regplan public key (expected '{PUBLIC_PREFIX} …')")
    try:
        raw = base64.b64decode(fields[1], validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise KeyFileError(f"{where}: malformed Ed25519 public key") from None
    return TrustedKey(keyid=keyid_of(key), key=key, source=where, name=" ".join(fields[2:]))


def load_trusted(path: Path) -> TrustedKey:
    """The one key of a ``.pub`` file written by keygen (a file of several: KeyFileError;
    ``trusted_from`` takes them all)."""
    keys = read_keys(path)
    if len(keys) > 1:
        raise KeyFileError(f"{path} holds {len(keys)} keys, not one")
    return keys[0]


def key_name(path: Path, key: Ed25519PrivateKey) -> str:
    """The name a signature by the private key at ``path`` records: the comment of its
    line in ``path.pub`` (``keygen --comment``), which must hold that key's public half."""
    pub = path.with_name(path.name + ".pub")
    if not pub.exists():
        raise KeyFileError(f"{pub} not found beside {path}: pass --signer NAME")
    mine = keyid_of(key.public_key())
    trusted = next((k for k in read_keys(pub) if k.keyid == mine), None)
    if trusted is None:
        raise KeyFileError(f"{pub} is not the public half of {path}: pass --signer NAME")
    if not trusted.name:
        raise KeyFileError(f"{pub} names nobody (no comment after the key): pass --signer NAME")
    return trusted.name


def raw_body_digest(raw: dict[str, Any]) -> bytes:
    """What a signature covers of a plan as read from its file: two plans with the
    same body digest are the same plan, whatever their signatures and formatting."""
    return codec.hex_sha256(codec.raw_body_chunks(raw))


def _message(body_digest: bytes, meta: dict[str, str]) -> bytes:
    return DOMAIN + b"\0" + body_digest + b"\0" + codec.canonical(meta)


def sign(plan: Plan, key: SigningKey, *, role: str, signer: str, now: datetime) -> Plan:
    """Return the plan with one more signature; the body is untouched."""
    body = codec.hex_sha256(codec.body_chunks(plan))
    signature = sign_body(body, key, role=role, signer=signer, now=now)
    return attrs.evolve(plan, signatures=(*plan.signatures, signature))


def sign_body(body: bytes, key: SigningKey, *, role: str, signer: str, now: datetime) -> Signature:
    """A signature over a plan's body digest (``body_digest``, ``raw_body_digest``): an
    SSHSIG of the digest for an SSH key (role, signer and time ride beside it, unsigned:
    where the signature lies says its role), regplan's own for a regplan key."""
    if role not in ROLES:
        raise ValueError(role)
    meta = {
        "keyid": keyid(key),
        "role": role,
        "signer": signer,
        "signed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if isinstance(key, SshKey):
        return Signature(sig=key.signature(body), **meta)
    sig = base64.b64encode(key.sign(_message(body, meta))).decode()
    return Signature(sig=sig, **meta)


def verify(
    raw: dict[str, Any], trusted: Sequence[TrustedKey], *, required: int = 1
) -> list[TrustedKey]:
    """Check the raw plan's signatures; return the distinct trusted keys that signed it.

    Works on the raw JSON object, before structuring, so that any edit of any
    value fails here with a signature error.
    """
    found = entries(raw.get("signatures"))
    return verified(found, lambda: raw_body_digest(raw), trusted, required)[1]


def body_digest(stream: PlanStream) -> bytes:
    """``raw_body_digest`` of a plan read as a stream (computed once per stream)."""
    return stream.body_digest


def verify_stream(
    stream: PlanStream,
    trusted: Sequence[TrustedKey],
    *,
    required: int = 1,
    detached: Sequence[Entry] = (),
) -> tuple[list[Checked], list[TrustedKey]]:
    """``verify`` of a plan read as a stream (the body is hashed list item by list
    item), counting the ``detached`` approvals found beside its file too; with the
    signatures as checked (what an approval rule decides on), each checked once."""
    found = [*entries(stream.raw_header.get("signatures")), *detached]
    return verified(found, lambda: body_digest(stream), trusted, required)


class State(enum.Enum):
    NOT_VERIFIED = "not verified"
    VALID = "valid"
    INVALID = "invalid"
    UNTRUSTED = "untrusted key"
    IGNORED = "ignored"
    """Not a signature at all (a FIFO or a folder named like an approval): shown, and
    neither counted nor refused."""


@attrs.frozen(kw_only=True)
class Entry:
    """One signature as found: in the plan, or in an approval file beside it."""

    raw: object
    source: str = "plan"
    """"plan", or the approval file's name."""
    problem: str = ""
    """Why the entry cannot be checked at all (a malformed file, another plan's)."""
    ignored: bool = False
    """No file to read at all (``problem`` says what it is): reported, never refused."""


@attrs.frozen(kw_only=True)
class Checked:
    """A signature as a review shows it."""

    keyid: str
    role: str
    signer: str
    """As the signature records it."""
    signed_at: str
    source: str
    state: State
    name: str = ""
    """The trusting person's name for the key (its ``.pub`` comment), when trusted."""
    detail: str = ""


FIELDS = ("keyid", "role", "signer", "signed_at", "sig")


def entries(sigs: object) -> list[Entry]:
    return [Entry(raw=s) for s in sigs] if isinstance(sigs, list) else []


def check(
    found: Sequence[Entry],
    body_digest: Callable[[], bytes],
    trusted: Sequence[TrustedKey],
    now: datetime | None = None,
) -> list[Checked]:
    """Each signature as valid, invalid, by an untrusted key, or (no ``trusted`` keys
    given) not verified; the body's digest is computed once, when a key is trusted.
    ``now``: when SSH keys' ``valid-after``/``valid-before`` are checked (the time of
    the check by default)."""
    by_id = {k.keyid: k for k in trusted if k.key is not None}
    signers = [k.ssh for k in trusted if k.ssh is not None]
    body_digest = functools.cache(body_digest)
    at = now or datetime.now(UTC)
    out = []
    for entry in found:
        raw = entry.raw if isinstance(entry.raw, dict) else {}
        if entry.problem or not all(isinstance(raw.get(f), str) for f in FIELDS):
            out.append(_malformed(entry, raw))
            continue
        meta = {f: raw[f] for f in FIELDS[:4]}
        if sshsig.is_armored(raw["sig"]):
            judged = _check_ssh(entry, meta, raw["sig"], body_digest, signers, at)
            out.append(judged if trusted else attrs.evolve(judged, state=State.NOT_VERIFIED))
            continue
        key = by_id.get(raw["keyid"])
        if not trusted:
            state = State.NOT_VERIFIED
        elif key is None or key.key is None:
            state = State.UNTRUSTED
        else:
            try:
                key.key.verify(
                    base64.b64decode(raw["sig"], validate=True), _message(body_digest(), meta)
                )
                state = State.VALID
            except (InvalidSignature, ValueError, binascii.Error):
                state = State.INVALID
        out.append(Checked(**meta, source=entry.source, state=state, name=key.name if key else ""))
    return out


def _check_ssh(
    entry: Entry,
    meta: dict[str, str],
    sig: str,
    body_digest: Callable[[], bytes],
    signers: Sequence[allowed.Signer],
    now: datetime,
) -> Checked:
    """An SSHSIG entry: its role is where it lies (the plan's own, or an approval beside
    it), its key the one inside it; trusted through the allowed signers."""
    role = "planner" if entry.source == "plan" else "approver"
    meta = {**meta, "role": role}
    if not signers:  # nothing to check against: the key inside names it
        keyid = _ssh_keyid(sig) or meta["keyid"]
        return Checked(**{**meta, "keyid": keyid}, source=entry.source, state=State.UNTRUSTED)
    verdict = sshcheck.judge(sig, body_digest(), signers, now)
    return Checked(
        **{**meta, "keyid": verdict.keyid},
        source=entry.source,
        state=_STATES[verdict.state],
        name=verdict.name,
        detail=verdict.detail,
    )


_STATES = {
    sshcheck.VALID: State.VALID,
    sshcheck.INVALID: State.INVALID,
    sshcheck.UNTRUSTED: State.UNTRUSTED,
}


def _ssh_keyid(sig: str) -> str:
    try:
        return sshsig.fingerprint(sshsig.parse(sig).public_blob)
    except sshsig.SshsigError:
        return ""


def _malformed(entry: Entry, raw: dict[str, Any]) -> Checked:
    def text(field: str) -> str:
        value = raw.get(field)
        return value if isinstance(value, str) else "?"

    return Checked(
        keyid=text("keyid"),
        role=text("role"),
        signer=text("signer"),
        signed_at=text("signed_at"),
        source=entry.source,
        state=State.IGNORED if entry.ignored else State.INVALID,
        detail=entry.problem or "malformed signature entry",
    )


def verified(
    found: Sequence[Entry],
    body_digest: Callable[[], bytes],
    trusted: Sequence[TrustedKey],
    required: int,
) -> tuple[list[Checked], list[TrustedKey]]:
    """The signatures ``found`` against the body's digest (computed once it is known
    that there is something to check): any invalid one fails, and ``required``
    distinct trusted keys must have signed. Returned: the signatures as checked, and
    the trusted keys that signed."""
    if not trusted:
        raise SignatureError("no trusted keys given (--trust or REGPLAN_TRUST)")
    if not found:
        raise SignatureError("the plan is not signed")
    every = check(found, body_digest, trusted)
    checked = [c for c in every if c.state is not State.IGNORED]
    for c in checked:
        where = "" if c.source == "plan" else f" in {c.source}"
        if c.detail:
            raise SignatureError(f"{c.detail}{where or ' in the plan'}")
        if c.state is State.INVALID:
            raise SignatureError(
                f"signature by {c.keyid} ({c.signer}){where} does not match: "
                "the plan was changed after it was signed"
            )
    valid: dict[str, TrustedKey] = {}
    for c in checked:
        if c.state is State.VALID:
            valid.setdefault(c.keyid, _trusted_of(c, trusted))
    if len(valid) < required:
        unknown = [f"{c.keyid} ({c.signer})" for c in checked if c.state is State.UNTRUSTED]
        others = f"; signed by untrusted {', '.join(unknown)}" if unknown else ""
        raise SignatureError(
            f"{len(valid)} valid signature(s) from trusted keys, {required} required{others}"
        )
    return every, list(valid.values())


def _trusted_of(c: Checked, trusted: Sequence[TrustedKey]) -> TrustedKey:
    """The trusted key behind a valid signature (a certificate's: its CA's line, under
    the certificate's key and principal)."""
    mine = next((k for k in trusted if k.keyid == c.keyid and k.name == c.name), None)
    return mine or TrustedKey(keyid=c.keyid, key=None, source="certificate", name=c.name)


def trusted_from(paths: Iterable[Path]) -> list[TrustedKey]:
    """Every key of every file (``--trust``), each once: the first line naming it wins
    (an SSH key on several allowed_signers lines keeps each: their options differ)."""
    found: dict[tuple[str, allowed.Signer | None], TrustedKey] = {}
    for path in paths:
        for key in read_keys(path):
            found.setdefault((key.keyid, key.ssh), key)
    return list(found.values())
