"""apply and rollback move nothing until something says the registry cannot write
(README: Safety procedure): --registry-url or the registry's --config (probed),
or the operator's --registry-stopped (recorded in history). What a probe proves, and
the proof that a read-only URL serves this storage: tests/test_guard_cli.py."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from tests.helpers import docker_hashes


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def planned(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.delenv("REGPLAN_REGISTRY_STOPPED")
    key = tmp_path / "k"
    assert run("keygen", str(key), "--comment", "alice@ops").exit_code == 0
    plan = tmp_path / "p.json"
    made = run(
        "plan", "--root", str(demo_root), "--key", str(key), "-o", str(plan), "--image", "old/repo"
    )
    assert made.exit_code == 0, made.output
    return plan, Path(f"{key}.pub")


def test_apply_with_nothing_said_refuses_and_moves_nothing(
    demo_root: Path, planned: tuple[Path, Path]
) -> None:
    plan, pub = planned
    before = docker_hashes(demo_root)
    r = run("apply", str(plan), "--trust", str(pub))
    assert r.exit_code == 6
    assert "--registry-url" in r.output and "--config" in r.output
    assert "--registry-stopped" in r.output
    assert r.output.count("\n") == 1
    assert docker_hashes(demo_root) == before


def test_registry_stopped_is_recorded_for_apply_and_rollback(
    demo_root: Path, planned: tuple[Path, Path]
) -> None:
    plan, pub = planned
    before = docker_hashes(demo_root)
    applied = run("apply", str(plan), "--trust", str(pub), "--registry-stopped", "--json")
    assert applied.exit_code == 0, applied.output
    apply_id = json.loads(applied.output)["apply_id"]
    assert run("rollback", apply_id, "--root", str(demo_root)).exit_code == 6
    back = run("rollback", apply_id, "--root", str(demo_root), "--registry-stopped")
    assert back.exit_code == 0, back.output
    assert docker_hashes(demo_root) == before
    [record] = json.loads(run("history", "--root", str(demo_root), "--json").output)
    assert record["registry"] == (
        "the operator said the registry is stopped (--registry-stopped); "
        "rollback: the operator said the registry is stopped (--registry-stopped)"
    )
    assert "registry: the operator said" in run("history", "--root", str(demo_root)).output


def test_a_url_in_the_config_is_probed_even_with_registry_stopped(
    demo_root: Path, planned: tuple[Path, Path], tmp_path: Path
) -> None:
    """The operator's word does not stop the probe: a config's http.addr is asked, and
    an answer that is not an HTTP registry's (something took the connection, then said
    nothing a registry says) is not taken as read-only, nor as stopped: exit 6."""
    plan, pub = planned
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    config = tmp_path / "config.yml"
    config.write_text(
        f"storage: {{filesystem: {{rootdirectory: {demo_root}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )

    def babble() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    before = docker_hashes(demo_root)
    with server:
        talker = threading.Thread(target=babble, daemon=True)
        talker.start()
        r = run(
            "apply", str(plan), "--trust", str(pub), "--config", str(config), "--registry-stopped"
        )
        talker.join(timeout=5)
    assert r.exit_code == 6, r.output
    assert f"the registry at http://127.0.0.1:{port} may accept writes" in r.output
    assert docker_hashes(demo_root) == before
