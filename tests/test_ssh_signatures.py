"""SSH signatures with the keys people already have (#35), checked both ways with stock
OpenSSH: what regplan signs, ``ssh-keygen -Y verify`` accepts; what ``ssh-keygen -Y
sign`` makes over ``regplan digest PLAN``, regplan's verify, show and apply accept.
Keys come from ``ssh-keygen``, trust from an ``allowed_signers`` file, and an agent
started here holds a key."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from markdown_it import MarkdownIt

from regplan.cli import cli
from regplan.plans import sshsig
from tests.test_views_inert import tags_of


def _require_openssh() -> None:
    if shutil.which("ssh-keygen") and shutil.which("ssh-agent"):
        return
    message = "SSH signature tests need OpenSSH (apt-get install openssh-client)"
    if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
        pytest.fail(message + "; REGPLAN_REQUIRE_REAL_REGISTRY=1 makes this a failure")
    pytest.skip(message)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def ssh_keygen(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ssh-keygen", *args], input=stdin, capture_output=True, check=False)


def make_key(path: Path, comment: str, kind: str = "ed25519", passphrase: str = "") -> Path:
    made = ssh_keygen("-q", "-t", kind, "-N", passphrase, "-C", comment, "-f", str(path))
    assert made.returncode == 0, made.stderr
    return path


def public(path: Path) -> str:
    """``KEYTYPE BASE64`` of a key's ``.pub`` (or a certificate's)."""
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


class Keys:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.alice = make_key(base / "alice", "alice@ops")
        self.bob = make_key(base / "bob", "bob@ops")
        self.allowed = base / "allowed_signers"
        self.allowed.write_text(
            f"alice@ops {public(self.alice)}\n"
            f'bob@ops namespaces="regplan-plan" {public(self.bob)} bob laptop\n'
        )


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    _require_openssh()
    return Keys(tmp_path)


@pytest.fixture
def plan(keys: Keys, demo_root: Path, tmp_path: Path) -> Path:
    """A plan of the demo registry signed by alice's OpenSSH key (ssh-keygen made it)."""
    out = tmp_path / "p.json"
    made = run("plan", "--root", str(demo_root), "--key", str(keys.alice), "-o", str(out),
               "--image", "team/app:v1")  # fmt: skip
    assert made.exit_code == 0, made.output
    return out


def digest(plan: Path) -> bytes:
    printed = run("digest", str(plan)).output.encode()
    assert len(printed) == 64 and not printed.endswith(b"\n")
    return printed


def openssh_verifies(keys: Keys, principal: str, sig: Path, plan: Path) -> bool:
    checked = ssh_keygen("-Y", "verify", "-f", str(keys.allowed), "-I", principal,
                         "-n", "regplan-plan", "-s", str(sig), stdin=digest(plan))  # fmt: skip
    return checked.returncode == 0


def openssh_signs(key: Path, plan: Path, name: str, namespace: str = "regplan-plan") -> Path:
    made = ssh_keygen("-Y", "sign", "-f", str(key), "-n", namespace, stdin=digest(plan))
    assert made.returncode == 0, made.stderr
    sig = plan.with_name(f"{plan.name}.approval-{name}.sig")
    sig.write_bytes(made.stdout)
    return sig


def test_regplans_signatures_are_checked_by_stock_openssh(keys: Keys, plan: Path) -> None:
    approved = run("approve", str(plan), "--key", str(keys.bob), "--trust", str(keys.allowed))
    assert approved.exit_code == 0, approved.output
    [approval] = plan.parent.glob("p.json.approval-*.sig")
    assert openssh_verifies(keys, "bob@ops", approval, plan)
    assert not openssh_verifies(keys, "alice@ops", approval, plan)
    [own] = json.loads(plan.read_text())["signatures"]
    planner_sig = plan.with_name("planner.sig")
    planner_sig.write_text(own["sig"])
    assert openssh_verifies(keys, "alice@ops", planner_sig, plan)


def test_openssh_approvals_are_found_and_accepted(keys: Keys, plan: Path, demo_root: Path) -> None:
    openssh_signs(keys.bob, plan, "bob")
    trust = ("--trust", str(keys.allowed))
    verified = run("verify", str(plan), *trust, "--require-signatures", "2",
                   "--root", str(demo_root), "--json")  # fmt: skip
    assert verified.exit_code == 0, verified.output
    text = run("show", str(plan), *trust).output
    assert "  VALID approver bob@ops (SHA256:" in text  # named by the allowed signers
    said = run("verify", str(plan), *trust, "--require-signatures", "2", "--root", str(demo_root))
    assert "signed by 2 trusted key(s) (alice@ops SHA256:" in said.output
    shown = run("show", str(plan), *trust, "--json").output
    states = {(s["name"], s["role"], s["state"]) for s in json.loads(shown)["signatures"]}
    assert states == {("alice@ops", "planner", "valid"), ("bob@ops", "approver", "valid")}
    applied = run("apply", str(plan), *trust, "--require-signatures", "2",
                  "--root", str(demo_root), "--json")  # fmt: skip
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.output)["moved"] > 0


def test_one_approval_short_is_refused(keys: Keys, plan: Path, demo_root: Path) -> None:
    short = run("apply", str(plan), "--trust", str(keys.allowed), "--require-signatures", "2",
                "--root", str(demo_root))  # fmt: skip
    assert short.exit_code == 3
    assert "1 valid signature(s) from trusted keys, 2 required" in short.output


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_rsa_and_ecdsa_keys_sign_and_verify(kind: str, keys: Keys, plan: Path) -> None:
    carol = make_key(keys.base / "carol", "carol@ops", kind=kind)
    keys.allowed.write_text(keys.allowed.read_text() + f"carol@ops {public(carol)}\n")
    approved = run("approve", str(plan), "--key", str(carol), "--trust", str(keys.allowed))
    assert approved.exit_code == 0, approved.output
    [approval] = plan.parent.glob("p.json.approval-*.sig")
    assert openssh_verifies(keys, "carol@ops", approval, plan)
    approval.unlink()
    openssh_signs(carol, plan, "carol")
    shown = json.loads(run("show", str(plan), "--trust", str(keys.allowed), "--json").output)
    assert [s["state"] for s in shown["signatures"]] == ["valid", "valid"]


SECRET = "open sesame"  # noqa: S105 (a test key's passphrase)


def test_an_encrypted_key_needs_its_passphrase(keys: Keys, demo_root: Path) -> None:
    locked = make_key(keys.base / "locked", "alice@ops", passphrase=SECRET)
    args = ("plan", "--root", str(demo_root), "--key", str(locked), "--image", "team/app:v1",
            "-o", str(keys.base / "q.json"))  # fmt: skip
    wrong = run(*args, env={"REGPLAN_KEY_PASSPHRASE": "guess-XYZ"})
    assert wrong.exit_code == 3
    assert wrong.output.strip() == f"Error: wrong passphrase for {locked}"
    unasked = run(*args, env={"REGPLAN_KEY_PASSPHRASE": None})  # type: ignore[dict-item]
    assert unasked.exit_code == 1
    assert "is encrypted: set REGPLAN_KEY_PASSPHRASE or run on a terminal" in unasked.output
    right = run(*args, env={"REGPLAN_KEY_PASSPHRASE": SECRET})
    assert right.exit_code == 0, right.output
    assert SECRET not in right.output and "guess-XYZ" not in wrong.output
    assert not (keys.base / "q.json").read_text().count("sesame")


@pytest.fixture
def agent(keys: Keys, tmp_path: Path) -> Iterator[str]:
    """A real ssh-agent on a socket of this test, holding bob's key."""
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": sock}
        add = ["ssh-add", str(keys.bob)]
        added = subprocess.run(add, env=env, capture_output=True, check=False)
        assert added.returncode == 0, added.stderr
        yield sock
    finally:
        proc.kill()
        proc.wait()


def test_the_agent_signs_by_public_key_or_fingerprint(keys: Keys, plan: Path, agent: str) -> None:
    os.rename(keys.bob, keys.base / "bob.elsewhere")  # only the agent holds it now
    env = {"SSH_AUTH_SOCK": agent}
    trust = ("--trust", str(keys.allowed))
    by_pub = run("approve", str(plan), "--key", f"{keys.bob}.pub", *trust, env=env)
    assert by_pub.exit_code == 0, by_pub.output
    [approval] = plan.parent.glob("p.json.approval-*.sig")
    assert openssh_verifies(keys, "bob@ops", approval, plan)
    approval.unlink()
    fingerprint = ssh_keygen("-l", "-E", "sha256", "-f", f"{keys.bob}.pub").stdout.split()[1]
    by_fp = run("approve", str(plan), "--key", fingerprint.decode(), *trust, env=env)
    assert by_fp.exit_code == 0, by_fp.output
    assert openssh_verifies(keys, "bob@ops", approval, plan)


def test_an_agent_that_is_absent_or_lacks_the_key_is_one_line(
    keys: Keys, plan: Path, agent: str
) -> None:
    trust = ("--trust", str(keys.allowed))
    lacks = run("approve", str(plan), "--key", f"{keys.alice}.pub", *trust,
                env={"SSH_AUTH_SOCK": agent})  # fmt: skip
    assert lacks.exit_code == 1
    assert lacks.output.startswith("Error: ssh-agent holds no key SHA256:")
    gone = run("approve", str(plan), "--key", f"{keys.bob}.pub", *trust,
               env={"SSH_AUTH_SOCK": str(keys.base / "no.sock")})  # fmt: skip
    assert gone.exit_code == 1
    assert gone.output.count("\n") == 1 and "no ssh-agent at" in gone.output
    stale = keys.base / "stale.sock"  # an agent that died: its socket file stays
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(stale))
    refused = run("approve", str(plan), "--key", f"{keys.bob}.pub", *trust,
                  env={"SSH_AUTH_SOCK": str(stale)})  # fmt: skip
    assert refused.exit_code == 1
    assert refused.output == f"Error: no ssh-agent at {stale}: Connection refused\n"
    unset = run("approve", str(plan), "--key", f"{keys.bob}.pub", *trust,
                env={"SSH_AUTH_SOCK": None})  # type: ignore[dict-item]  # fmt: skip
    assert unset.output == "Error: no ssh-agent: SSH_AUTH_SOCK is not set\n"
    assert not list(plan.parent.glob("p.json.approval-*.sig"))


def test_a_dsa_key_is_refused_in_one_line(keys: Keys, plan: Path) -> None:
    dsa = make_key(keys.base / "old", "old@ops", kind="dsa")
    refused = run("approve", str(plan), "--key", str(dsa), "--trust", str(keys.allowed))
    assert refused.exit_code == 1
    assert refused.output == f"Error: {dsa}: a DSA key; use Ed25519 (or RSA, ECDSA)\n"


def test_another_namespace_is_refused(keys: Keys, plan: Path, demo_root: Path) -> None:
    openssh_signs(keys.alice, plan, "git", namespace="git")
    refused = run("verify", str(plan), "--trust", str(keys.allowed), "--root", str(demo_root))
    assert refused.exit_code == 3
    assert "is for namespace 'git', not 'regplan-plan' in p.json.approval-git.sig" in refused.output


def test_an_expired_key_is_refused_naming_who_and_when(
    keys: Keys, plan: Path, demo_root: Path
) -> None:
    keys.allowed.write_text(
        f'alice@ops {public(keys.alice)}\nbob@ops valid-before="20260101Z" {public(keys.bob)}\n'
    )
    openssh_signs(keys.bob, plan, "bob")
    refused = run("verify", str(plan), "--trust", str(keys.allowed), "--root", str(demo_root))
    assert refused.exit_code == 3
    assert "the key of bob@ops expired on 2026-01-01 00:00:00Z (valid-before)" in refused.output


def test_a_bad_allowed_signers_line_says_line_and_column(keys: Keys, plan: Path) -> None:
    keys.allowed.write_text(
        f"alice@ops {public(keys.alice)}\nbob@ops no-touch-required {public(keys.bob)}\n"
    )
    bad = run("show", str(plan), "--trust", str(keys.allowed))
    assert bad.exit_code == 1
    assert bad.output == f"Error: {keys.allowed}:2:9: unknown option 'no-touch-required'\n"


def test_a_user_certificate_is_trusted_through_its_authority(
    keys: Keys, plan: Path, demo_root: Path
) -> None:
    ca = make_key(keys.base / "ca", "ops-ca")
    issued = ssh_keygen("-q", "-s", str(ca), "-I", "bob", "-n", "bob@ops", "-V", "-1h:+1h",
                        f"{keys.bob}.pub")  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    keys.allowed.write_text(f"alice@ops {public(keys.alice)}\n*@ops cert-authority {public(ca)}\n")
    openssh_signs(keys.base / "bob-cert.pub", plan, "bob")
    assert openssh_verifies(keys, "bob@ops", plan.with_name("p.json.approval-bob.sig"), plan)
    verified = run("verify", str(plan), "--trust", str(keys.allowed), "--root", str(demo_root),
                   "--require-signatures", "2", "--json")  # fmt: skip
    assert verified.exit_code == 0, verified.output
    shown = json.loads(run("show", str(plan), "--trust", str(keys.allowed), "--json").output)
    assert {s["name"] for s in shown["signatures"]} == {"alice@ops", "bob@ops"}


@pytest.mark.parametrize(
    ("options", "accepted"),
    [
        ("", True),
        ('namespaces="regplan-plan"', True),
        ('namespaces="git,regplan-*"', True),
        ('namespaces="git"', False),
        ('valid-after="20200101"', True),
        ('valid-after="29990101Z"', False),
        ('valid-before="20200101Z"', False),
        ('valid-before="299901011200"', True),
        ('valid-after="20200101",valid-before="29990101"', True),
    ],
)
def test_allowed_signers_options_agree_with_openssh(
    options: str, accepted: bool, keys: Keys, plan: Path
) -> None:
    keys.allowed.write_text(f"bob@ops {options} {public(keys.bob)}\n")
    sig = openssh_signs(keys.bob, plan, "bob")
    assert openssh_verifies(keys, "bob@ops", sig, plan) is accepted
    shown = json.loads(run("show", str(plan), "--trust", str(keys.allowed), "--json").output)
    [approval] = [s for s in shown["signatures"] if s["role"] == "approver"]
    assert (approval["state"] == "valid") is accepted


def _security_key_signature(message: bytes, flags: int) -> tuple[str, str]:
    """What a FIDO authenticator behind ``sk-ssh-ed25519@openssh.com`` makes (PROTOCOL.u2f),
    made here in software: the allowed_signers key line and the armored signature."""
    device = Ed25519PrivateKey.generate()
    raw = device.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    application, counter = b"ssh:", 7
    blob = paramiko.Message()
    for part in (sshsig.SK_ED25519.encode(), raw, application):
        blob.add_string(part)
    signed = (hashlib.sha256(application).digest() + bytes([flags]) + counter.to_bytes(4, "big")
              + hashlib.sha256(sshsig.to_sign(message)).digest())  # fmt: skip
    sig = paramiko.Message()
    sig.add_string(sshsig.SK_ED25519)
    sig.add_string(device.sign(signed))
    sig.add_byte(bytes([flags]))
    sig.add_int(counter)
    line = f"{sshsig.SK_ED25519} {base64.b64encode(blob.asbytes()).decode()}"
    return line, sshsig.armor(blob.asbytes(), sig.asbytes())


@pytest.mark.parametrize(("flags", "accepted"), [(0x01, True), (0x00, False)])
def test_a_security_key_signature_is_checked_as_openssh_does(
    flags: int, accepted: bool, keys: Keys, plan: Path
) -> None:
    """A hardware key's signature verifies in ssh-keygen and regplan alike when it was
    touched (the user-present flag); one made without a touch ssh-keygen accepts and
    regplan refuses: an approval is a person's act."""
    line, armored = _security_key_signature(digest(plan), flags)
    keys.allowed.write_text(f"alice@ops {public(keys.alice)}\nyubi@ops {line}\n")
    sig = plan.with_name("p.json.approval-yubi.sig")
    sig.write_text(armored)
    assert openssh_verifies(keys, "yubi@ops", sig, plan)
    shown = json.loads(run("show", str(plan), "--trust", str(keys.allowed), "--json").output)
    [approval] = [s for s in shown["signatures"] if s["role"] == "approver"]
    assert approval["state"] == ("valid" if accepted else "invalid")
    assert approval["name"] == ("yubi@ops" if accepted else "")


def test_keygen_ssh_writes_a_key_openssh_uses(keys: Keys, plan: Path) -> None:
    made = run("keygen", str(keys.base / "carol"), "--ssh", "--comment", "carol@ops")
    assert made.exit_code == 0, made.output
    listed = ssh_keygen("-l", "-f", str(keys.base / "carol.pub")).stdout.decode()
    assert listed.split()[1] in made.output and "carol@ops (ED25519)" in listed
    keys.allowed.write_text(f"carol@ops {public(keys.base / 'carol')}\n")
    openssh_signs(keys.base / "carol", plan, "carol")  # ssh-keygen reads the private key
    assert openssh_verifies(keys, "carol@ops", plan.with_name("p.json.approval-carol.sig"), plan)


def test_a_principal_is_inert_in_every_view(keys: Keys, plan: Path) -> None:
    """The allowed signers name the signer: a name with escapes and markup renders as text."""
    hostile = "bob\x1b[2J<img src=x onerror=alert(1)>`|**x**@ops"
    keys.allowed.write_text(f'"{hostile}" {public(keys.bob)}\n')
    openssh_signs(keys.bob, plan, "bob")
    trust = ("--trust", str(keys.allowed))
    text = run("show", str(plan), *trust).output
    assert "\x1b" not in text and "VALID approver bob\\x1b[2J<img" in text
    page = run("show", str(plan), *trust, "--format", "html").output
    assert "<img" not in page and "&lt;img src=x" in page
    md = run("show", str(plan), *trust, "--format", "markdown").output
    rendered = MarkdownIt("gfm-like", {"linkify": True}).render(md)
    assert "\x1b" not in md and "img" not in tags_of(rendered)
    shown = json.loads(run("show", str(plan), *trust, "--json").output)
    assert hostile in {s["name"] for s in shown["signatures"]}


def test_an_ssh_signature_against_regplan_keys_only_is_untrusted(
    keys: Keys, plan: Path, tmp_path: Path
) -> None:
    """Trust given, but no SSH key in it: the SSH signatures are by untrusted keys (not
    "not verified"), and the plan has no valid signature."""
    made = run("keygen", str(tmp_path / "own"), "--comment", "own@ops")
    assert made.exit_code == 0, made.output
    shown = run("show", str(plan), "--trust", str(tmp_path / "own.pub"), "--json").output
    assert [s["state"] for s in json.loads(shown)["signatures"]] == ["untrusted key"]
    assert [
        s["state"] for s in json.loads(run("show", str(plan), "--json").output)["signatures"]
    ] == ["not verified"]
