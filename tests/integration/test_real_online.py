"""The running registry: a writable one is refused without a trace, a read-only or
stopped one is not; regplan check proves every kept image through the API, catches
a stale blob descriptor cache before the restart and a layer deleted behind
regplan's back after it; basic auth with htpasswd, credentials from the command
line or ~/.docker/config.json."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regplan.demo.samples import build_demo, demo_pushes
from regplan.registry.guard import Holding, short
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import docker_hashes
from tests.integration.realreg import RealRegistry, Serve, free_port, htpasswd_file, tls_pair
from tests.integration.tokenserver import TokenServer

CACHE = "  cache: {blobdescriptor: inmemory}\n"
READ_ONLY = CACHE + "  maintenance: {readonly: {enabled: true}}\n"


def regplan(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "regplan", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def planned(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The demo registry and a signed plan of team/app:v1 and every untagged manifest."""
    root = tmp_path / "root"
    build_demo(root)
    key = tmp_path / "k"
    assert regplan("keygen", str(key)).returncode == 0
    plan = tmp_path / "p.json"
    made = regplan(
        "plan", "--root", str(root), "--key", str(key), "-o", str(plan),
        "--image=team/app:v1", "--untagged=team/*", "--gc",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return root, plan, Path(f"{key}.pub")


def test_a_writable_registry_is_refused_without_a_trace(
    planned: tuple[Path, Path, Path], serve: Serve
) -> None:
    root, plan, pub = planned
    reg: RealRegistry = serve(root, storage=CACHE)
    before = docker_hashes(root)
    for command in (
        ["apply", str(plan), "--trust", str(pub)],
        ["rollback", "nothing-yet", "--root", str(root)],
        ["purge", "--older-than", "7d", "--root", str(root)],
    ):
        refused = regplan(*command, "--registry-url", reg.url)
        assert refused.returncode == 6, refused.stderr
        assert refused.stderr.count("\n") == 1
        assert "storage.maintenance.readonly" in refused.stderr
    assert docker_hashes(root) == before  # no upload session, no probe manifest
    assert not (root / "regplan-state" / "applies").exists()


def test_a_running_registry_nobody_named_is_never_applied_under(
    planned: tuple[Path, Path, Path], serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#20.12: with neither --registry-url, --config nor --registry-stopped, apply and
    rollback refuse in one line (exit 6) and the running registry's storage is untouched;
    given its config, its http.addr is probed and the writable registry refused."""
    monkeypatch.delenv("REGPLAN_REGISTRY_STOPPED")
    root, plan, pub = planned
    reg: RealRegistry = serve(root)
    before = docker_hashes(root)
    for command in (
        ["apply", str(plan), "--trust", str(pub)],
        ["rollback", "x", "--root", str(root)],
    ):
        refused = regplan(*command)
        assert refused.returncode == 6, refused.stderr
        assert refused.stderr.count("\n") == 1 and "--registry-stopped" in refused.stderr
        probed = regplan(*command, "--config", str(reg.config), "--registry-stopped")
        assert probed.returncode == 6, probed.stderr
        assert f"the registry at {reg.url} accepts writes" in probed.stderr
    assert docker_hashes(root) == before
    assert reg.pull("team/app:v1")


def test_read_only_then_stale_cache_then_clean_check(
    planned: tuple[Path, Path, Path], serve: Serve
) -> None:
    """Read-only: apply proceeds. Before the restart the in-memory cache still answers
    for removed blobs: check --plan says so (exit 1); after it, all is well."""
    root, plan, pub = planned
    reg: RealRegistry = serve(root, storage=READ_ONLY)
    check = ["check", "--registry-url", reg.url, "--root", str(root)]
    warm = regplan(*check)  # fills the cache with every blob of every image
    assert warm.returncode == 0, warm.stdout + warm.stderr
    applied = regplan("apply", str(plan), "--trust", str(pub), "--registry-url", reg.url)
    assert applied.returncode == 0, applied.stderr
    assert f"regplan check --registry-url {reg.url} --root {root} --plan {plan}" in applied.stdout
    stale = regplan(*check, "--plan", str(plan))
    assert stale.returncode == 1
    assert "STILL SERVED" in stale.stdout
    assert "caches are stale" in stale.stderr
    lines = [line for line in stale.stdout.splitlines() if line.startswith("STILL SERVED")]
    assert len(lines) == len(set(lines))  # each removed thing once
    reg.restart()
    clean = regplan(*check, "--plan", str(plan), "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert report["ok"] and report["images"] == 11 and report["still_served"] == []
    assert report["removed_checked"] > 10
    assert report["removed_gone"] == report["removed_checked"]
    assert report["plan"].endswith("is applied (" + report["plan"].rsplit("(", 1)[1])

    # #20.7: after a rollback nothing is "still served" and no cache is called stale
    apply_id = report["plan"].rsplit("(", 1)[1].rstrip(")")
    back = regplan("rollback", apply_id, "--root", str(root), "--registry-url", reg.url)
    assert back.returncode == 0, back.stderr
    reg.restart()
    after = regplan(*check, "--plan", str(plan))
    assert after.returncode == 0, after.stdout + after.stderr
    assert "was rolled back" in after.stdout and "STILL SERVED" not in after.stdout
    assert "stale" not in after.stdout + after.stderr


def test_a_stopped_registry_is_the_operators_word(
    planned: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing answering at the URL is no proof (#32.4): exit 6 until the operator says
    the registry is stopped, then the apply proceeds and records both."""
    monkeypatch.delenv("REGPLAN_REGISTRY_STOPPED")
    root, plan, pub = planned
    nobody_there = f"http://127.0.0.1:{free_port()}"
    apply = ["apply", str(plan), "--trust", str(pub), "--registry-url", nobody_there]
    refused = regplan(*apply)
    assert refused.returncode == 6, refused.stderr
    applied = regplan(*apply, "--registry-stopped")
    assert applied.returncode == 0, applied.stderr
    [record] = json.loads(regplan("history", "--root", str(root), "--json").stdout)
    assert record["registry"].startswith(f"probed {nobody_there}: stopped, as the operator said")


def test_a_typo_or_another_registry_is_no_proof_while_this_one_writes(
    planned: tuple[Path, Path, Path], serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#32.4 on the real registry, writable over the storage: a refused URL (the typo'd
    port) and a read-only registry over OTHER storage (the newest tag names another
    manifest there) are both exit 6 naming why, nothing moves, and every image pulls."""
    monkeypatch.delenv("REGPLAN_REGISTRY_STOPPED")
    root, plan, pub = planned
    reg: RealRegistry = serve(root, storage=CACHE)
    held = Holding.of(location.read(FsStorage.locate(root)), storage=str(root))
    newest = held.asks[0]
    other: RealRegistry = serve(tmp_path / "other", storage=CACHE)
    item = next(i for _, _, i in demo_pushes().pushes if i.digest != newest.digest)
    other.push(newest.repo, newest.ref, item)
    other.stop()
    other.configure(storage=READ_ONLY)
    other.start()
    before = docker_hashes(root)
    apply = ["apply", str(plan), "--trust", str(pub)]

    typo = f"http://127.0.0.1:{free_port()}"
    refused = regplan(*apply, "--registry-url", typo)
    assert refused.returncode == 6, refused.stderr
    assert f"nothing answered at {typo}" in refused.stderr
    stray = regplan(*apply, "--registry-url", other.url, "--registry-stopped")
    assert stray.returncode == 6, stray.stderr
    assert f"the read-only registry at {other.url} serves other storage than {root}" in (
        stray.stderr
    )
    assert f"{newest.name} is {short(newest.digest)} here but {short(item.digest)} there" in (
        stray.stderr
    )
    replicas = regplan(*apply, "--registry-url", reg.url, "--registry-url", other.url)
    assert replicas.returncode == 6 and "accepts writes" in replicas.stderr
    assert docker_hashes(root) == before
    assert not (root / "regplan-state" / "applies").exists()
    assert all(reg.pull(ref) for ref in ("team/app:v1", "old/repo:2019", newest.name))


def test_check_names_an_image_whose_layer_was_deleted_behind_regplans_back(
    planned: tuple[Path, Path, Path], serve: Serve
) -> None:
    root, plan, pub = planned
    assert regplan("apply", str(plan), "--trust", str(pub)).returncode == 0
    reg: RealRegistry = serve(root, storage=CACHE)
    victim = _layer_of(root, "team/app/cache", "stable")
    (root / "docker/registry/v2/blobs/sha256" / victim[:2] / victim / "data").unlink()
    reg.restart()
    broken = regplan("check", "--registry-url", reg.url, "--root", str(root), "--image", "team/*")
    assert broken.returncode == 1
    assert f"BROKEN team/app/cache:stable: blob sha256:{victim} answered 404" in broken.stdout
    assert "1 image(s) broken; undo the latest apply with: regplan rollback " in broken.stderr


def _layer_of(root: Path, repo: str, tag: str) -> str:
    v2 = root / "docker/registry/v2"
    digest = (v2 / f"repositories/{repo}/_manifests/tags/{tag}/current/link").read_text()
    hexd = digest.split(":")[1]
    manifest = json.loads((v2 / "blobs/sha256" / hexd[:2] / hexd / "data").read_text())
    layer: str = manifest["layers"][-1]["digest"].split(":")[1]
    return layer


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    return htpasswd_file(tmp_path / "htpasswd", "ops", "s3cret")


def test_basic_auth_with_htpasswd(
    planned: tuple[Path, Path, Path], serve: Serve, htpasswd: Path, tmp_path: Path
) -> None:
    root, _, _ = planned
    auth = f"auth:\n  htpasswd: {{realm: regplan-test, path: {htpasswd}}}\n"
    reg: RealRegistry = serve(root, storage=CACHE, extra=auth)
    check = ["check", "--registry-url", reg.url, "--root", str(root), "--image", "old/*"]
    anonymous = regplan(*check, env={"DOCKER_CONFIG": str(tmp_path / "none")})
    assert anonymous.returncode == 1 and "(401)" in anonymous.stderr
    by_flag = regplan(*check, "--registry-user", "ops", env={"REGPLAN_REGISTRY_PASSWORD": "s3cret"})
    assert by_flag.returncode == 0, by_flag.stderr
    docker = tmp_path / "docker"
    docker.mkdir()
    token = base64.b64encode(b"ops:s3cret").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {reg.host: {"auth": token}}}))
    by_docker_login = regplan(*check, env={"DOCKER_CONFIG": str(docker)})
    assert by_docker_login.returncode == 0, by_docker_login.stderr
    # the probe authenticates too: with credentials it sees a writable registry
    refused = regplan(
        "purge", "--older-than", "1d", "--root", str(root), "--registry-url", reg.url,
        env={"DOCKER_CONFIG": str(docker)},
    )  # fmt: skip
    assert refused.returncode == 6 and "(400)" in refused.stderr


def test_the_registry_token_flow(
    planned: tuple[Path, Path, Path], serve: Serve, tmp_path: Path
) -> None:
    """auth.token: the registry sends a Bearer challenge; regplan asks the token service
    with the user's basic credentials, once per scope, and the check passes."""
    root, _, _ = planned
    tokens = TokenServer(tmp_path, user="ops", password="s3cret")  # noqa: S106 (a test fixture)
    try:
        reg: RealRegistry = serve(root, storage=CACHE, extra=tokens.registry_config())
        check = ["check", "--registry-url", reg.url, "--root", str(root), "--image", "team/*"]
        wrong = regplan(*check, "--registry-user", "ops", env={"REGPLAN_REGISTRY_PASSWORD": "no"})
        assert wrong.returncode == 1 and "token service" in wrong.stderr
        assert wrong.stderr.count("\n") == 1
        ok = regplan(*check, "--registry-user", "ops", env={"REGPLAN_REGISTRY_PASSWORD": "s3cret"})
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "all whole" in ok.stdout
        repositories = 4  # team/app, team/app/cache, team/signed, team/tool: one scope each
        assert tokens.issued == repositories
    finally:
        tokens.stop()


def test_tls_with_a_ca_file_or_insecure(
    planned: tuple[Path, Path, Path], serve: Serve, tmp_path: Path
) -> None:
    """A registry on https with its own CA: unverified it is an error, never 'stopped'
    (the probe refuses rather than guess); with --ca-cert or --insecure all is well."""
    root, plan, pub = planned
    cert, key = tls_pair(tmp_path)
    reg: RealRegistry = serve(root, storage=READ_ONLY, tls=(cert, key))
    check = ["check", "--registry-url", reg.url, "--root", str(root), "--image", "old/*"]
    unverified = regplan(*check)
    assert unverified.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in unverified.stderr
    assert regplan(*check, "--ca-cert", str(cert)).returncode == 0
    assert regplan(*check, "--insecure").returncode == 0
    cannot_tell = regplan("apply", str(plan), "--trust", str(pub), "--registry-url", reg.url)
    assert cannot_tell.returncode == 6, cannot_tell.stderr
    applied = regplan(
        "apply", str(plan), "--trust", str(pub), "--registry-url", reg.url, "--ca-cert", str(cert)
    )
    assert applied.returncode == 0, applied.stderr  # read-only: it proceeds


def test_a_real_pull_through_cache_is_refused(
    planned: tuple[Path, Path, Path], serve: Serve, tmp_path: Path
) -> None:
    """#21.8: distribution with proxy.remoteurl refuses pushes with a JSON 405
    UNSUPPORTED, yet writes to its storage on every uncached pull: apply refuses it
    (exit 6) and its storage is untouched."""
    root, plan, pub = planned
    upstream: RealRegistry = serve(tmp_path / "upstream")
    cache: RealRegistry = serve(root, extra=f"proxy: {{remoteurl: {upstream.url}}}\n")
    before = docker_hashes(root)
    refused = regplan("apply", str(plan), "--trust", str(pub), "--registry-url", cache.url)
    assert refused.returncode == 6, refused.stderr
    assert "pull-through cache" in refused.stderr
    assert docker_hashes(root) == before
