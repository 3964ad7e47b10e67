"""OpenSSH's SSHSIG signatures (PROTOCOL.sshsig): what ``ssh-keygen -Y sign`` writes
and ``ssh-keygen -Y verify`` checks, as git's SSH commit signing uses them.

A signature covers ``"SSHSIG" string(namespace) string("") string(hash) string(H(message))``
and travels armored (``-----BEGIN SSH SIGNATURE-----``) with the signer's public key
inside. regplan's message is a plan's body digest (``regplan digest PLAN``) and its
namespace ``regplan-plan``. The SSH wire format is read and written with paramiko's
``Message``, the keys and their signature algorithms are cryptography's; nothing
here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import textwrap
from typing import TYPE_CHECKING

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

if TYPE_CHECKING:
    import paramiko

NAMESPACE = "regplan-plan"
MAGIC = b"SSHSIG"
VERSION = 1
HASHES = {"sha512": hashlib.sha512, "sha256": hashlib.sha256}
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
SK_ED25519 = "sk-ssh-ed25519@openssh.com"
SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
USER_PRESENT = 0x01
"""The flag a security key sets when it was touched. regplan requires it (an approval
is a person's act); ``ssh-keygen -Y verify`` does not look at it."""


class SshsigError(ValueError):
    """Not an SSHSIG signature, or one of a kind regplan does not check."""


@attrs.frozen
class Envelope:
    """A parsed SSHSIG signature."""

    public_blob: bytes
    """The signer's public key (or certificate) in SSH wire form."""
    namespace: str
    hash_alg: str
    signature: bytes
    """The signature blob: string(algorithm) string(signature) [flags counter for sk keys]."""

    @property
    def key_type(self) -> str:
        return key_type(self.public_blob)


def wire(data: bytes | None = None) -> paramiko.Message:
    """An SSH wire-format message (paramiko's), to read ``data`` or to write. paramiko is
    imported here, not with the module: it cost every command 9 MiB at start, and
    a plan signed and checked with regplan keys never needs it."""
    import paramiko  # noqa: PLC0415

    return paramiko.Message(data)


def fingerprint(blob: bytes) -> str:
    """OpenSSH's fingerprint of a public key blob (``ssh-keygen -l``): ``SHA256:…``."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def key_type(blob: bytes) -> str:
    try:
        return str(wire(blob).get_text())
    except Exception:  # noqa: BLE001 (paramiko raises what struct gives on short data)
        return "?"


def to_sign(message: bytes, namespace: str = NAMESPACE, hash_alg: str = "sha512") -> bytes:
    """What the key signs for ``message`` in ``namespace``."""
    m = wire()
    m.add_string(namespace)
    m.add_string(b"")
    m.add_string(hash_alg)
    m.add_string(HASHES[hash_alg](message).digest())
    return MAGIC + bytes(m.asbytes())


def armor(public_blob: bytes, signature: bytes, namespace: str = NAMESPACE) -> str:
    """The armored signature file's text, as ssh-keygen writes it (ending in a newline)."""
    m = wire()
    m.add_int(VERSION)
    m.add_string(public_blob)
    m.add_string(namespace)
    m.add_string(b"")
    m.add_string("sha512")
    m.add_string(signature)
    body = base64.b64encode(MAGIC + m.asbytes()).decode()
    return "\n".join([BEGIN, *textwrap.wrap(body, 70), END]) + "\n"


def is_armored(text: str) -> bool:
    return text.lstrip().startswith(BEGIN)


def parse(text: str) -> Envelope:
    lines = text.strip().splitlines()
    if len(lines) < 3 or lines[0].strip() != BEGIN or lines[-1].strip() != END:
        raise SshsigError("not an armored SSH signature")
    try:
        raw = base64.b64decode("".join(line.strip() for line in lines[1:-1]), validate=True)
    except binascii.Error:
        raise SshsigError("an SSH signature that is not base64") from None
    if not raw.startswith(MAGIC):
        raise SshsigError("not an SSHSIG signature")
    try:
        m = wire(raw[len(MAGIC) :])
        version = m.get_int()
        fields = (m.get_binary(), m.get_text(), m.get_binary(), m.get_text(), m.get_binary())
    except Exception:  # noqa: BLE001 (truncated data: struct.error, IndexError, UnicodeError)
        raise SshsigError("a truncated SSH signature") from None
    if version != VERSION:
        raise SshsigError(f"SSHSIG version {version}, not {VERSION}")
    blob, namespace, _reserved, hash_alg, signature = fields
    if hash_alg not in HASHES:
        raise SshsigError(f"SSHSIG hash {hash_alg!r} (expected sha512 or sha256)")
    return Envelope(blob, namespace, hash_alg, signature)


def public_key_of(blob: bytes) -> object:
    """cryptography's key for a plain public key blob (SSHCertificate for a certificate),
    or the blob itself for a security key (cryptography does not read those)."""
    kind = key_type(blob)
    if kind in (SK_ED25519, SK_ECDSA):
        return blob
    line = kind.encode() + b" " + base64.b64encode(blob)
    try:
        return serialization.load_ssh_public_identity(line)
    except (ValueError, UnsupportedAlgorithm):
        raise SshsigError(f"an SSH key of type {kind!r} that regplan does not read") from None


def verify(envelope: Envelope, message: bytes, key_blob: bytes) -> bool:
    """Whether ``envelope`` is a valid signature of ``message`` by the public key
    ``key_blob`` (a certificate's own key: the caller checks the certificate)."""
    data = to_sign(message, envelope.namespace, envelope.hash_alg)
    try:
        sig = wire(envelope.signature)
        algorithm, raw = sig.get_text(), sig.get_binary()
        if key_type(key_blob) == SK_ED25519:
            return _verify_sk(key_blob, raw, sig, data)
        return _verify_plain(public_key_of(key_blob), algorithm, raw, data)
    except (InvalidSignature, SshsigError):
        return False
    except Exception:  # noqa: BLE001 (a truncated signature blob)
        return False


def _verify_plain(key: object, algorithm: str, raw: bytes, data: bytes) -> bool:
    if isinstance(key, ed25519.Ed25519PublicKey) and algorithm == "ssh-ed25519":
        key.verify(raw, data)
        return True
    if isinstance(key, rsa.RSAPublicKey) and algorithm in RSA_HASHES:
        key.verify(raw, data, padding.PKCS1v15(), RSA_HASHES[algorithm])
        return True
    if isinstance(key, ec.EllipticCurvePublicKey) and algorithm.startswith("ecdsa-sha2-"):
        rs = wire(raw)
        der = encode_dss_signature(rs.get_mpint(), rs.get_mpint())
        key.verify(der, data, ec.ECDSA(_EC_HASHES[key.curve.name]))
        return True
    return False


RSA_HASHES: dict[str, hashes.HashAlgorithm] = {
    "rsa-sha2-512": hashes.SHA512(),
    "rsa-sha2-256": hashes.SHA256(),
}
_EC_HASHES: dict[str, hashes.HashAlgorithm] = {
    "secp256r1": hashes.SHA256(),
    "secp384r1": hashes.SHA384(),
    "secp521r1": hashes.SHA512(),
}


def _verify_sk(key_blob: bytes, raw: bytes, rest: paramiko.Message, data: bytes) -> bool:
    """A FIDO security key's Ed25519 signature (PROTOCOL.u2f): the authenticator signs
    ``sha256(application) flags counter sha256(data)``; the user must have touched it."""
    key = wire(key_blob)
    key.get_text()
    public, application = key.get_binary(), key.get_binary()
    flags, counter = rest.get_byte(), rest.get_int()
    if not flags[0] & USER_PRESENT:
        return False
    signed = (
        hashlib.sha256(application).digest()
        + flags
        + counter.to_bytes(4, "big")
        + hashlib.sha256(data).digest()
    )
    ed25519.Ed25519PublicKey.from_public_bytes(public).verify(raw, signed)
    return True
