"""``--key``: which key signs, told by what the argument is.

- ``SHA256:…``: the key ssh-agent holds with that fingerprint (``ssh-add -l``);
- an OpenSSH private key file (``ssh-keygen -t ed25519``; encrypted: the passphrase
  from ``REGPLAN_KEY_PASSPHRASE`` or a prompt on a terminal);
- an OpenSSH public key file (``id_ed25519.pub``): ssh-agent's key of that public half
  (a hardware ``sk-ssh-ed25519`` key signs so);
- a PEM file: regplan's own key (``regplan keygen``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from regplan.errors import KeyFileError
from regplan.plans import allowed, signing, sshkeys
from regplan.plans.signing import SigningKey


def load(spec: str, passphrase: Callable[[], str | None]) -> SigningKey:
    if spec.startswith("SHA256:"):
        return sshkeys.from_agent(fingerprint=spec)
    path = Path(spec)
    try:
        data = signing.read_regular(path, signing.KEYS_LIMIT)
    except OSError as e:
        raise KeyFileError(f"cannot read key {path}: {e.strerror}") from None
    head = data.lstrip()
    if head.startswith(sshkeys.PRIVATE_OPENSSH):
        return sshkeys.from_private(data, path, passphrase)
    if head.startswith(b"-----BEGIN"):
        return signing.private_of(data, path)
    first = head.split(maxsplit=1)[0].decode("ascii", "replace") if head else ""
    if first in allowed.KEY_TYPES:
        return sshkeys.from_public_line(data.decode("ascii", "replace"), str(path))
    if first == "ssh-dss":
        raise KeyFileError(f"{path}: a DSA key; use Ed25519 (ssh-keygen -t ed25519)")
    raise KeyFileError(
        f"{path} is not a key regplan signs with (an OpenSSH private key, the public key "
        "of a key in ssh-agent, or a regplan key)"
    )


def signer_name(spec: str, key: SigningKey, default: Callable[[], str]) -> str:
    """The name a signature records when --signer is not given: an SSH key's comment
    (its ``.pub``, or the agent's), else ``default()``; a regplan key's ``.pub`` name."""
    if isinstance(key, sshkeys.SshKey):
        return key.comment or default()
    return signing.key_name(Path(spec), key)
