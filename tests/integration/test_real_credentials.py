"""Credentials the docker way against the real registry behind htpasswd (and a token
service): a real credential helper (an executable on PATH speaking docker's protocol)
named by credHelpers or credsStore gives `regplan check`, the guard's probe and its
proof what they need; its secret is in no output, record or plan."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from regplan.demo.samples import build_demo
from tests.integration.realreg import RealRegistry, Serve, htpasswd_file
from tests.integration.tokenserver import TokenServer
from tests.test_credentials import asked, store

CACHE = "  cache: {blobdescriptor: inmemory}\n"
READ_ONLY = CACHE + "  maintenance: {readonly: {enabled: true}}\n"
SECRET = "pw-" + secrets.token_hex(8)


def regplan(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "regplan", "-v", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    for shown in (run.stdout, run.stderr):  # -v: every log line too
        assert SECRET not in shown
        assert base64.b64encode(f"ops:{SECRET}".encode()).decode() not in shown
    return run


@pytest.fixture
def planned(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The demo registry and a signed plan of team/app:v1."""
    root = tmp_path / "root"
    build_demo(root)
    key = tmp_path / "k"
    assert regplan("keygen", str(key), env={}).returncode == 0
    plan = tmp_path / "p.json"
    made = regplan(
        "plan", "--root", str(root), "--key", str(key), "-o", str(plan), "--image=team/app:v1",
        env={},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return root, plan, Path(f"{key}.pub")


@pytest.fixture
def htpasswd(tmp_path: Path) -> str:
    """The registry's auth section: the user ops with SECRET (bcrypt, by htpasswd)."""
    path = htpasswd_file(tmp_path / "htpasswd", "ops", SECRET)
    return f"auth:\n  htpasswd: {{realm: regplan-test, path: {path}}}\n"


def docker_env(tmp_path: Path, name: str, doc: Mapping[str, object]) -> dict[str, str]:
    """DOCKER_CONFIG holding ``doc``, and the test's helpers first on PATH."""
    folder = tmp_path / f"docker-{name}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(doc))
    path = f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"
    return {"DOCKER_CONFIG": str(folder), "PATH": path, "DOCKER_AUTH_CONFIG": ""}


@pytest.mark.parametrize("way", ["credHelpers", "credsStore"])
def test_check_and_the_probe_ask_the_helper(
    planned: tuple[Path, Path, Path], serve: Serve, htpasswd: str, tmp_path: Path, way: str
) -> None:
    root, _, _ = planned
    reg: RealRegistry = serve(root, storage=CACHE, extra=htpasswd)
    keychain = store(tmp_path / "bin", "keychain", {reg.host: ("ops", SECRET)})
    store(tmp_path / "bin", "empty", {})
    doc: dict[str, object] = (
        {"credHelpers": {reg.host: "keychain"}, "credsStore": "empty"}
        if way == "credHelpers"
        else {"credHelpers": {"elsewhere:1": "empty"}, "credsStore": "keychain"}
    )
    env = docker_env(tmp_path, "helper", doc)
    check = ["check", "--registry-url", reg.url, "--root", str(root), "--image", "team/*"]
    ok = regplan(*check, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "all whole" in ok.stdout
    assert asked(keychain) == [reg.host]  # once, the host alone
    # the guard's probe authenticates too: it sees a writable registry (400), not a 401
    refused = regplan(
        "purge", "--older-than", "1d", "--root", str(root), "--registry-url", reg.url, env=env
    )
    assert refused.returncode == 6 and "(400)" in refused.stderr
    # docker's order: a helper that has nothing for the host is the answer, auths unread
    token = base64.b64encode(f"ops:{SECRET}".encode()).decode()
    empty = {"credsStore": "empty", "auths": {reg.host: {"auth": token}}}
    anonymous = regplan(*check, env=docker_env(tmp_path, "empty", empty))
    assert anonymous.returncode == 1 and "(401)" in anonymous.stderr
    assert anonymous.stderr.count("Error:") == 1


def test_apply_under_a_read_only_registry_through_the_helper(
    planned: tuple[Path, Path, Path], serve: Serve, htpasswd: str, tmp_path: Path
) -> None:
    """The guard's probe and its proof (HEADs of what the storage holds) authenticate with
    the helper's credentials; without them nothing says the registry cannot write."""
    root, plan, pub = planned
    reg: RealRegistry = serve(root, storage=READ_ONLY, extra=htpasswd)
    keychain = store(tmp_path / "bin", "keychain", {reg.host: ("ops", SECRET)})
    apply = ["apply", str(plan), "--trust", str(pub), "--registry-url", reg.url]
    unknown = regplan(*apply, env=docker_env(tmp_path, "none", {}))
    assert unknown.returncode == 6, unknown.stderr
    env = docker_env(tmp_path, "helper", {"credsStore": "keychain"})
    applied = regplan(*apply, env=env)
    assert applied.returncode == 0, applied.stderr
    assert asked(keychain) == [reg.host]  # once for the probe and its proof
    history = regplan("history", "--root", str(root), "--json", env=env)
    assert history.returncode == 0 and "read-only" in history.stdout
    for path in [plan, *root.glob("regplan-state/**/*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_an_identity_token_from_the_helper(
    planned: tuple[Path, Path, Path], serve: Serve, tmp_path: Path
) -> None:
    """The user ``<token>``: the secret is traded with the token service for access tokens
    (OAuth2 refresh-token grant), once per repository, as docker does."""
    root, _, _ = planned
    tokens = TokenServer(tmp_path, user="ops", password=secrets.token_hex(8), refresh_token=SECRET)
    try:
        reg: RealRegistry = serve(root, storage=CACHE, extra=tokens.registry_config())
        store(tmp_path / "bin", "tok", {reg.host: ("<token>", SECRET)})
        store(tmp_path / "bin", "stale", {reg.host: ("<token>", "expired-" + SECRET)})
        check = ["check", "--registry-url", reg.url, "--root", str(root), "--image", "team/*"]
        ok = regplan(*check, env=docker_env(tmp_path, "tok", {"credsStore": "tok"}))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert tokens.issued == 4  # team/app, team/app/cache, team/signed, team/tool
        stale = regplan(*check, env=docker_env(tmp_path, "stale", {"credsStore": "stale"}))
        assert stale.returncode == 1 and "token service" in stale.stderr
        assert stale.stderr.count("Error:") == 1
    finally:
        tokens.stop()
