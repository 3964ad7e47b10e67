"""SSH keys that sign plans: an OpenSSH private key file (encrypted ones too), or a key
held by ``ssh-agent`` (YubiKeys' ``sk-ssh-ed25519`` among them), chosen by its public
key file or its fingerprint. Either makes SSHSIG signatures (``sshsig``) that stock
OpenSSH checks. cryptography reads the key files, paramiko speaks to the agent.
"""

from __future__ import annotations

import base64
import os
import socket
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from regplan.errors import KeyFileError, SignatureError
from regplan.plans import allowed, sshsig

if TYPE_CHECKING:
    import paramiko

PRIVATE_OPENSSH = b"-----BEGIN OPENSSH PRIVATE KEY-----"
PASSPHRASE_ENV = "REGPLAN_KEY_PASSPHRASE"  # noqa: S105 (the variable's name)
AGENT_TYPES = allowed.KEY_TYPES


@attrs.frozen
class SshKey:
    """A key that signs SSHSIG envelopes."""

    public_blob: bytes
    comment: str
    """The key's name as its ``.pub`` file or the agent gives it ("" when neither does)."""
    sign_data: Callable[[bytes], bytes] = attrs.field(eq=False, repr=False)
    """Signs bytes; returns the SSH signature blob."""

    @property
    def keyid(self) -> str:
        return sshsig.fingerprint(self.public_blob)

    def signature(self, message: bytes) -> str:
        """The armored signature of ``message`` in the ``regplan-plan`` namespace."""
        return sshsig.armor(self.public_blob, self.sign_data(sshsig.to_sign(message)))


PrivateSsh = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def from_private(data: bytes, path: Path, passphrase: Callable[[], str | None]) -> SshKey:
    """An OpenSSH private key file's key; ``passphrase`` is asked only when it is
    encrypted (and never echoed, logged or put in a message)."""
    try:
        with warnings.catch_warnings():  # DSA: refused below in one line, not warned of
            warnings.simplefilter("ignore")
            key = serialization.load_ssh_private_key(data, password=None)
    except TypeError:  # encrypted
        secret = passphrase()
        if secret is None:
            raise KeyFileError(
                f"{path} is encrypted: set {PASSPHRASE_ENV} or run on a terminal"
            ) from None
        try:
            key = serialization.load_ssh_private_key(data, password=secret.encode())
        except ValueError:
            raise SignatureError(f"wrong passphrase for {path}") from None
    except (ValueError, serialization.UnsupportedAlgorithm) as e:  # type: ignore[attr-defined]
        raise KeyFileError(f"{path}: not an OpenSSH key regplan can use ({_short(e)})") from None
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ):
        kind = type(key).__name__.removesuffix("PrivateKey")
        raise KeyFileError(f"{path}: a {kind} key; use Ed25519 (or RSA, ECDSA)")
    return SshKey(public_blob=_public_blob(key), comment=_comment(path), sign_data=_signer(key))


def _short(e: Exception) -> str:
    return (str(e).splitlines() or ["?"])[0][:80]


def _public_blob(key: PrivateSsh) -> bytes:
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return base64.b64decode(line.split()[1])


def _comment(path: Path) -> str:
    """The comment of ``path.pub`` (what ``ssh-keygen -C`` wrote), if it is beside it."""
    try:
        fields = path.with_name(path.name + ".pub").read_text().split()
    except (OSError, UnicodeDecodeError):
        return ""
    return " ".join(fields[2:])


def _signer(key: PrivateSsh) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        m = sshsig.wire()
        if isinstance(key, ed25519.Ed25519PrivateKey):
            m.add_string("ssh-ed25519")
            m.add_string(key.sign(data))
        elif isinstance(key, rsa.RSAPrivateKey):
            m.add_string("rsa-sha2-512")
            m.add_string(key.sign(data, padding.PKCS1v15(), hashes.SHA512()))
        else:
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(_EC[key.curve.name])))
            inner = sshsig.wire()
            inner.add_mpint(r)
            inner.add_mpint(s)
            m.add_string(f"ecdsa-sha2-{_CURVES[key.curve.name]}")
            m.add_string(inner.asbytes())
        return bytes(m.asbytes())

    return sign


_EC: dict[str, hashes.HashAlgorithm] = {
    "secp256r1": hashes.SHA256(),
    "secp384r1": hashes.SHA384(),
    "secp521r1": hashes.SHA512(),
}
_CURVES = {"secp256r1": "nistp256", "secp384r1": "nistp384", "secp521r1": "nistp521"}


def from_agent(*, blob: bytes | None = None, fingerprint: str = "") -> SshKey:
    """The agent's key with this public ``blob`` or this ``fingerprint`` (``SHA256:…``)."""
    agent = _agent()
    want = fingerprint or sshsig.fingerprint(blob or b"")
    for key in agent.get_keys():
        if sshsig.fingerprint(key.blob) == want:
            return SshKey(public_blob=key.blob, comment=key.comment, sign_data=_agent_signer(key))
    raise KeyFileError(f"ssh-agent holds no key {want} (ssh-add -l lists what it holds)")


def _agent() -> paramiko.Agent:
    """The agent at SSH_AUTH_SOCK, asked for its keys (paramiko takes an agent it cannot
    reach for one with no keys: whether one answers is found out here first)."""
    sock = os.environ.get("SSH_AUTH_SOCK", "")
    if not sock:
        raise KeyFileError("no ssh-agent: SSH_AUTH_SOCK is not set")
    try:
        if not stat.S_ISSOCK(Path(sock).stat().st_mode):
            raise KeyFileError(f"no ssh-agent at {sock}: not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            probe.connect(sock)
    except OSError as e:
        raise KeyFileError(f"no ssh-agent at {sock}: {e.strerror or e}") from None
    import paramiko  # noqa: PLC0415 (see sshsig.wire)

    try:
        return paramiko.Agent()
    except paramiko.SSHException as e:
        raise KeyFileError(f"ssh-agent at {sock} does not answer: {e}") from None


def _agent_signer(key: paramiko.AgentKey) -> Callable[[bytes], bytes]:
    import paramiko  # noqa: PLC0415 (see sshsig.wire)

    algorithm = "rsa-sha2-512" if key.name == "ssh-rsa" else None

    def sign(data: bytes) -> bytes:
        try:
            return bytes(key.sign_ssh_data(data, algorithm))
        except paramiko.SSHException as e:
            raise SignatureError(f"ssh-agent refused to sign: {e}") from None

    return sign


def from_public_line(text: str, source: str) -> SshKey:
    """The agent's key named by a public key file's line (``--key id_ed25519.pub``)."""
    line = next((x for x in text.splitlines() if x.strip() and not x.startswith("#")), "")
    try:
        signer = allowed.public_line(line)
    except allowed.LineError as e:
        raise KeyFileError(f"{source}: {e}") from None
    return from_agent(blob=signer.blob)
