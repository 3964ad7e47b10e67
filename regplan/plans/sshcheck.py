"""Judge one SSHSIG signature of a plan against the allowed signers, as
``ssh-keygen -Y verify -f allowed_signers -n regplan-plan`` would, naming the principal.

A key not in the file is untrusted (the signature is shown, not counted); a trusted
key's signature that does not verify, or that its line does not allow now (another
namespace, outside ``valid-after``/``valid-before``), is invalid: the plan is refused
with the reason. An SSHSIG carries no signed time, so a key's window is checked at
the time of the check, as ``ssh-keygen -Y verify`` does by default. Pure.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import SSHCertificate, SSHCertificateType

from regplan.plans import sshsig
from regplan.plans.allowed import Signer

VALID, INVALID, UNTRUSTED = "valid", "invalid", "untrusted"


@attrs.frozen
class Verdict:
    keyid: str
    """The signing key's fingerprint (a certificate's own key's)."""
    state: str
    name: str = ""
    """The principal the allowed signers give it (valid signatures only)."""
    detail: str = ""
    """Why it is invalid, when it is more than "does not match"."""
    line: Signer | None = None
    """The allowed signers line that vouched for it."""


def judge(text: str, message: bytes, signers: Sequence[Signer], now: datetime) -> Verdict:
    try:
        env = sshsig.parse(text)
    except sshsig.SshsigError as e:
        return Verdict("?", INVALID, detail=str(e))
    if env.key_type.endswith("-cert-v01@openssh.com"):
        return _judge_cert(env, message, signers, now)
    keyid = sshsig.fingerprint(env.public_blob)
    lines = [s for s in signers if not s.cert_authority and s.blob == env.public_blob]
    if not lines:
        return Verdict(keyid, UNTRUSTED)
    if env.namespace != sshsig.NAMESPACE:
        return Verdict(keyid, INVALID, detail=_namespace(env, keyid))
    if not sshsig.verify(env, message, env.public_blob):
        return Verdict(keyid, INVALID)
    return _allowed(keyid, lines, now, principals=None)


def _namespace(env: sshsig.Envelope, keyid: str) -> str:
    return f"signature by {keyid} is for namespace {env.namespace[:40]!r}, not {sshsig.NAMESPACE!r}"


def _allowed(
    keyid: str, lines: Sequence[Signer], now: datetime, principals: Sequence[str] | None
) -> Verdict:
    """The first line that allows the key now (and, for a certificate, names one of its
    ``principals``); else the first reason why not."""
    problems = []
    for line in lines:
        name = line.principals
        if principals is not None:
            name = next((p for p in principals if line.allows(p)), "")
            if not name:
                problems.append(f"certificate {keyid} names none of {line.principals!r}")
                continue
        if not line.for_regplan():
            problems.append(
                f"the key of {name} is trusted for namespaces {line.namespaces!r} only, "
                f"not {sshsig.NAMESPACE!r}"
            )
            continue
        window = line.window_problem(now)
        if window:
            problems.append(f"the key of {name} {window}")
            continue
        return Verdict(keyid, VALID, name=name, line=line)
    return Verdict(keyid, INVALID, detail=problems[0])


def _judge_cert(
    env: sshsig.Envelope, message: bytes, signers: Sequence[Signer], now: datetime
) -> Verdict:
    """A signature by a user certificate: trusted through a ``cert-authority`` line for
    the CA that signed it, for the principals the certificate names, while it is valid."""
    try:
        cert = sshsig.public_key_of(env.public_blob)
    except sshsig.SshsigError as e:
        return Verdict(sshsig.fingerprint(env.public_blob), INVALID, detail=str(e))
    if not isinstance(cert, SSHCertificate):
        return Verdict(sshsig.fingerprint(env.public_blob), INVALID, detail="not a certificate")
    key_blob = _blob(cert.public_key())
    keyid = sshsig.fingerprint(key_blob)
    ca = _blob(cert.signature_key())
    lines = [s for s in signers if s.cert_authority and s.blob == ca]
    if not lines:
        return Verdict(keyid, UNTRUSTED)
    problem = _cert_problem(cert, keyid, now)
    if not problem and env.namespace != sshsig.NAMESPACE:
        problem = _namespace(env, keyid)
    if problem:
        return Verdict(keyid, INVALID, detail=problem)
    if not sshsig.verify(env, message, key_blob):
        return Verdict(keyid, INVALID)
    principals = [p.decode("utf-8", "replace") for p in cert.valid_principals]
    return _allowed(keyid, lines, now, principals=principals)


def _cert_problem(cert: SSHCertificate, keyid: str, now: datetime) -> str:
    try:
        cert.verify_cert_signature()
    except Exception:  # noqa: BLE001 (InvalidSignature, or an algorithm cryptography lacks)
        return f"certificate {keyid} is not signed by its certificate authority"
    if cert.type is not SSHCertificateType.USER:
        return f"certificate {keyid} is a host certificate"
    if not cert.valid_principals:
        return f"certificate {keyid} names no principal"
    at = now.timestamp()
    if not cert.valid_after <= at < cert.valid_before:
        return (
            f"certificate {keyid} is not valid now (valid {cert.valid_after}..{cert.valid_before})"
        )
    return ""


def _utc(seconds: int) -> str:
    if seconds >= 2**63 - 1:
        return "forever"
    return datetime.fromtimestamp(min(seconds, 253402300799), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _blob(key: object) -> bytes:
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)  # type: ignore[attr-defined]
    return base64.b64decode(line.split()[1])
