"""The write guard end to end (#32.4-5), against registries served on 127.0.0.1: no
answer (a refused port) proves nothing, so apply, rollback and purge refuse it (exit 6)
unless the operator says the registry is stopped; a read-only registry is trusted only
once it is shown to serve this storage (its manifests by tag are the storage's), each
replica's; and signatures are checked before any registry is asked."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import docker_hashes

Manifests = Mapping[tuple[str, str], str]
"""(repository, tag or digest) -> the digest a registry serves for it."""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@contextlib.contextmanager
def registry(manifests: Manifests, *, writes: int = 405) -> Iterator[tuple[str, list[str]]]:
    """A registry's answers on 127.0.0.1: a manifest PUT answers ``writes`` (405:
    read-only, 400: writable), a manifest by tag or digest its ``manifests`` digest (else
    404); (its URL, every request it got)."""
    asked: list[str] = []

    class Registry(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            asked.append(f"PUT {self.path}")
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(writes)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:
            asked.append(f"HEAD {self.path}")
            repo, _, ref = self.path.removeprefix("/v2/").rpartition("/manifests/")
            digest = manifests.get((repo, ref))
            self.send_response(404 if digest is None else 200)
            if digest is not None:
                self.send_header("Docker-Content-Digest", digest)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def served_by(root: Path) -> dict[tuple[str, str], str]:
    """What a registry over ``root`` serves: every tag and revision."""
    inventory = location.read(FsStorage.locate(root))
    out: dict[tuple[str, str], str] = {}
    for name, repo in inventory.repositories.items():
        out |= {(name, d): d for d in repo.revisions}
        out |= {(name, t.name): t.current for t in repo.tags.values() if t.current}
    return out


def refused_url() -> str:
    """A port on 127.0.0.1 nothing listens on (the typo'd port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def planned(demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A signed plan of old/repo over the demo; the operator's word is not given."""
    monkeypatch.delenv("REGPLAN_REGISTRY_STOPPED")
    key = tmp_path / "k"
    assert run("keygen", str(key), "--comment", "alice@ops").exit_code == 0
    plan = tmp_path / "p.json"
    made = run(
        "plan", "--root", str(demo_root), "--key", str(key), "-o", str(plan), "--image", "old/repo"
    )
    assert made.exit_code == 0, made.output
    return plan, Path(f"{key}.pub")


def history(root: Path) -> list[dict[str, str]]:
    found: list[dict[str, str]] = json.loads(run("history", "--root", str(root), "--json").output)
    return found


def test_a_refused_port_is_no_proof(demo_root: Path, planned: tuple[Path, Path]) -> None:
    """A typo'd port refuses the connection just as a stopped registry does: apply and
    rollback refuse it (exit 6, one line, nothing moved) until the operator says the
    registry is stopped; then the journal records both."""
    plan, pub = planned
    url = refused_url()
    before = docker_hashes(demo_root)
    refused = run("apply", str(plan), "--trust", str(pub), "--registry-url", url)
    assert refused.exit_code == 6, refused.output
    assert f"nothing answered at {url}" in refused.output and "proves nothing" in refused.output
    assert refused.output.count("\n") == 1
    assert docker_hashes(demo_root) == before
    assert not (demo_root / "regplan-state" / "applies").exists()

    applied = run(
        "apply", str(plan), "--trust", str(pub), "--registry-url", url, "--registry-stopped"
    )
    assert applied.exit_code == 0, applied.output
    [record] = history(demo_root)
    assert record["registry"].startswith(f"probed {url}: stopped, as the operator said")
    assert "no answer" in record["registry"] and "Connection refused" in record["registry"]
    moved = docker_hashes(demo_root)
    back = ["rollback", record["apply_id"], "--root", str(demo_root), "--registry-url", url]
    assert run(*back).exit_code == 6
    assert docker_hashes(demo_root) == moved
    assert run(*back, "--registry-stopped").exit_code == 0
    assert docker_hashes(demo_root) == before


def test_a_read_only_registry_of_other_storage_is_refused(
    demo_root: Path, planned: tuple[Path, Path]
) -> None:
    """Read-only, but not this storage's registry (it knows none of its tags, or names
    other manifests by them): exit 6 naming the mismatch, whatever the operator says."""
    plan, pub = planned
    before = docker_hashes(demo_root)
    other = dict.fromkeys(served_by(demo_root), "sha256:" + "e" * 64)
    for manifests, mismatch in (({}, "unknown there (404)"), (other, "eeeeeeeeeeee there")):
        with registry(manifests) as (url, asked):
            refused = run(
                "apply", str(plan), "--trust", str(pub), "--registry-url", url, "--registry-stopped"
            )
        assert refused.exit_code == 6, refused.output
        assert f"the read-only registry at {url} serves other storage than {demo_root}" in (
            refused.output
        )
        assert mismatch in refused.output and refused.output.count("\n") == 1
        assert asked[0].startswith("PUT ") and asked[1].startswith("HEAD ")
    assert docker_hashes(demo_root) == before
    assert not (demo_root / "regplan-state" / "applies").exists()


def test_a_read_only_registry_of_this_storage_is_trusted(
    demo_root: Path, planned: tuple[Path, Path]
) -> None:
    """Each replica is probed and shown to serve this storage; one that does not stops
    the apply; when all do, the journal records each one's proof."""
    plan, pub = planned
    before = docker_hashes(demo_root)
    with registry(served_by(demo_root)) as (one, _), registry(served_by(demo_root)) as (two, _):
        with registry({}) as (stray, _):
            args = ["apply", str(plan), "--trust", str(pub), "--registry-url", one]
            refused = run(*args, "--registry-url", stray)
            assert refused.exit_code == 6, refused.output
            assert f"at {stray} serves other storage" in refused.output
            assert docker_hashes(demo_root) == before
        applied = run(*args, "--registry-url", two)
        assert applied.exit_code == 0, applied.output
        assert f"regplan check --registry-url {one} " in applied.output
    [record] = history(demo_root)
    said = record["registry"]
    assert said.startswith(f"probed {one}: read-only (") and f"; probed {two}: read-only (" in said
    assert said.count("it serves this storage (") == 2


def test_a_writable_replica_is_refused(demo_root: Path, planned: tuple[Path, Path]) -> None:
    plan, pub = planned
    before = docker_hashes(demo_root)
    with registry(served_by(demo_root)) as (good, _), registry({}, writes=400) as (busy, _):
        refused = run(
            "apply", str(plan), "--trust", str(pub), "--registry-url", good, "--registry-url", busy
        )
    assert refused.exit_code == 6, refused.output
    assert f"the registry at {busy} accepts writes" in refused.output
    assert docker_hashes(demo_root) == before


def test_the_configs_address_is_the_registrys_own_view(
    demo_root: Path, planned: tuple[Path, Path], tmp_path: Path
) -> None:
    """--config's http.addr is probed as a given URL is; when nothing answers there the
    message says that address may not be reachable from here."""
    plan, pub = planned
    url = refused_url()
    config = tmp_path / "config.yml"
    config.write_text(
        f"storage: {{filesystem: {{rootdirectory: {demo_root}}}}}\n"
        f"http: {{addr: '{url.removeprefix('http://')}'}}\n"
    )
    before = docker_hashes(demo_root)
    refused = run("apply", str(plan), "--trust", str(pub), "--config", str(config))
    assert refused.exit_code == 6, refused.output
    assert f"nothing answered at {url}" in refused.output
    assert "the registry's own view, and may not be reachable from here" in refused.output
    assert docker_hashes(demo_root) == before
    stopped = ["--config", str(config), "--registry-stopped"]
    assert run("apply", str(plan), "--trust", str(pub), *stopped).exit_code == 0
    back = run("rollback", history(demo_root)[0]["apply_id"], *stopped)
    assert back.exit_code == 0, back.output
    assert (
        f"rollback: probed {url}: stopped, as the operator said"
        in (history(demo_root)[0]["registry"])
    )
    assert docker_hashes(demo_root) == before


def test_purge_refuses_a_url_that_does_not_answer(
    demo_root: Path, planned: tuple[Path, Path]
) -> None:
    url = refused_url()
    purge = ["purge", "--older-than", "1d", "--root", str(demo_root), "--registry-url", url]
    refused = run(*purge)
    assert refused.exit_code == 6 and "nothing answered" in refused.output
    assert run(*purge, "--registry-stopped").exit_code == 0
    assert run("purge", "--older-than", "1d", "--root", str(demo_root)).exit_code == 0


def test_signatures_are_checked_before_any_registry_or_storage(
    demo_root: Path, planned: tuple[Path, Path], tmp_path: Path
) -> None:
    """A wrong --trust is exit 3 before the registry is asked anything or the storage
    is read (here: a --root that does not exist), and before the guard's own refusal."""
    plan, _ = planned
    assert run("keygen", str(tmp_path / "other")).exit_code == 0
    wrong = ["--trust", str(tmp_path / "other.pub")]
    with registry(served_by(demo_root)) as (url, asked):
        r = run("apply", str(plan), *wrong, "--registry-url", url, "--root", str(tmp_path / "no"))
        assert r.exit_code == 3, r.output
        assert asked == []
    r = run("apply", str(plan), *wrong)  # nothing said of the registry: still exit 3
    assert r.exit_code == 3, r.output
    damaged = tmp_path / "damaged.json"
    damaged.write_text(plan.read_text()[:-200])
    with registry(served_by(demo_root)) as (url, asked):
        r = run("apply", str(damaged), *wrong, "--registry-url", url)
        assert r.exit_code not in (0, 6), r.output
        assert asked == []
