"""The registry seam: credentials, challenges, config, advice; what the probe makes of
an answer or of none; what a registry serves (a manifest's digest, its catalog)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from regplan.errors import RegistryError
from regplan.registry.guard import Ask, Catalog, Served
from regplan.registry.online import cache_advice, mode_advice
from regplan.registry.regclient import (
    Credentials,
    Mode,
    RegistryClient,
    _params,
    docker_credentials,
    nothing_answered,
)
from regplan.storage.config import Running, running


def _config(tmp_path: Path, auths: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return path


@pytest.mark.parametrize(
    "key", ["registry.example:5000", "https://registry.example:5000", "registry.example:5000/v2/"]
)
def test_docker_config_auths_by_host(tmp_path: Path, key: str) -> None:
    auth = base64.b64encode(b"ops:pa:ss").decode()
    config = _config(tmp_path, {key: {"auth": auth}, "other:1": {"auth": "eDp5"}})
    found = docker_credentials("https://registry.example:5000", config)
    assert found == Credentials(user="ops", password="pa:ss")  # noqa: S106 (a test fixture)


def test_docker_config_without_an_entry_or_unreadable(tmp_path: Path) -> None:
    assert docker_credentials("http://a:1", _config(tmp_path, {"b:1": {"auth": "eDp5"}})) is None
    assert docker_credentials("http://a:1", tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{")
    assert docker_credentials("http://a:1", tmp_path / "bad.json") is None


def test_bearer_challenge_parameters() -> None:
    text = 'realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push"'
    assert _params(text) == {
        "realm": "https://auth.example/token",
        "service": "registry",
        "scope": "repository:a/b:pull,push",
    }


@pytest.mark.parametrize("url", ["ftp://x", "http://", ""])
def test_a_registry_url_that_is_not_http(url: str) -> None:
    with pytest.raises(RegistryError, match="expected http"):
        RegistryClient(url)


def test_running_settings_and_their_environment_overrides(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(
        "storage:\n  filesystem: {rootdirectory: /r}\n"
        "  maintenance: {readonly: {enabled: true}}\n  cache: {blobdescriptor: redis}\n"
        "redis: {addr: cache.local:6380}\n"
    )
    assert running(config, {}) == Running(
        readonly=True, cache="redis", redis_addrs=("cache.local:6380",), url="http://127.0.0.1:5000"
    )
    env = {
        "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED": "false",
        "REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR": "inmemory",
    }
    assert running(config, env) == Running(
        readonly=False,
        cache="inmemory",
        redis_addrs=("cache.local:6380",),
        url="http://127.0.0.1:5000",
    )


@pytest.mark.parametrize(
    ("http", "env", "url"),
    [
        ("{addr: ':5001'}", {}, "http://127.0.0.1:5001"),
        (
            "{addr: '0.0.0.0:443', tls: {certificate: /c.pem, key: /k.pem}}",
            {},
            "https://127.0.0.1:443",
        ),
        ("{addr: 'reg.local:5000', prefix: /registry/}", {}, "http://reg.local:5000/registry"),
        ("{addr: '[::]:5000'}", {}, "http://[::1]:5000"),
        ("{addr: /run/reg.sock, net: unix}", {}, None),
        ("{addr: ':5000'}", {"REGISTRY_HTTP_ADDR": "127.0.0.2:6000"}, "http://127.0.0.2:6000"),
    ],
)
def test_where_the_registry_listens_from_its_config(
    tmp_path: Path, http: str, env: dict[str, str], url: str | None
) -> None:
    """apply and rollback probe the URL the registry's own config says it answers on."""
    config = tmp_path / "config.yml"
    config.write_text(f"storage: {{filesystem: {{rootdirectory: /r}}}}\nhttp: {http}\n")
    assert running(config, env).url == url


def test_cache_advice() -> None:
    assert cache_advice(None).startswith("Restart the registry now")
    redis = cache_advice(Running(readonly=True, cache="redis", redis_addrs=("cache.local:6380",)))
    assert "a restart does not" in redis
    assert "redis-cli -h cache.local -p 6380 --scan --pattern 'blobs::*'" in redis
    assert "'repository::*::blobs*'" in redis


def test_mode_advice() -> None:
    on = Running(readonly=True, cache=None, redis_addrs=())
    off = Running(readonly=False, cache=None, redis_addrs=())
    assert mode_advice(None, probed=False) is None
    assert "turn it off" in (mode_advice(on, probed=True) or "")
    assert "make sure it was stopped" in (mode_advice(off, probed=False) or "")
    assert mode_advice(off, probed=True) is None  # the probe found it read-only or stopped


@pytest.mark.parametrize(
    ("status", "mode"),
    [(400, Mode.WRITABLE), (404, Mode.WRITABLE), (405, Mode.READ_ONLY), (502, Mode.UNKNOWN)],
)
def test_the_probe_reads_the_answer_to_its_manifest_put(status: int, mode: Mode) -> None:
    """A proxy's 502 says nothing about writes: unknown (refused), never 'stopped'."""

    class Answer(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        with RegistryClient(f"http://127.0.0.1:{server.server_address[1]}") as client:
            assert client.probe().mode is mode
    finally:
        server.shutdown()
        server.server_close()


UNKNOWN_HOST = "http://no-such-host.invalid:5000"


def test_no_answer_is_not_stopped() -> None:
    """A refused connection or a name that does not resolve: nothing answered, which
    proves nothing (UNREACHABLE, never 'stopped'); the guard decides what that means."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url, why in ((f"http://127.0.0.1:{port}", "Connection refused"), (UNKNOWN_HOST, "")):
        with RegistryClient(url) as client:
            probe = client.probe()
        assert probe.mode is Mode.UNREACHABLE, probe
        assert why in probe.detail and probe.detail and url not in probe.detail  # said once


def test_a_server_that_takes_the_connection_and_says_nothing_is_unknown() -> None:
    """Something listens but never answers (a hung registry, a black-holing proxy):
    not 'no answer' but an answer regplan cannot read: UNKNOWN (refused by the guard
    whatever the operator says)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        with RegistryClient(url, timeout=0.2) as client:
            probe = client.probe()
    assert probe.mode is Mode.UNKNOWN, probe


@pytest.mark.parametrize(
    ("error", "nobody"),
    [
        (httpx.ConnectTimeout("timed out"), True),
        (httpx.ReadTimeout("timed out"), False),
        (httpx.RemoteProtocolError("closed"), False),
        (httpx.ConnectError("ssl"), False),
    ],
)
def test_which_failures_met_nobody(error: httpx.TransportError, nobody: bool) -> None:
    """No connection within the timeout met no one; a read timeout or a broken answer
    did (a ConnectError is 'nobody' only for a refusal or an unknown name: above)."""
    assert nothing_answered(error) is nobody


def test_what_a_registry_serves_by_head_and_its_catalog() -> None:
    digest = "sha256:" + "a" * 64

    class Answer(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            known = self.path == "/v2/team/app/manifests/v1"
            self.send_response(200 if known else 404)
            if known:
                self.send_header("Docker-Content-Digest", digest)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            body = b'{"repositories": ["team/app"]}' if "n=100" in self.path else b"<html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        with RegistryClient(f"http://127.0.0.1:{server.server_address[1]}") as client:
            tag = Ask(repo="team/app", ref="v1", digest=digest)
            assert client.served(tag) == Served(ask=tag, status=200, digest=digest)
            other = Ask(repo="team/app", ref="v2", digest=digest)
            assert client.served(other) == Served(ask=other, status=404)
            assert client.catalog() == Catalog(status=200, names=("team/app",))
    finally:
        server.shutdown()
        server.server_close()
    with RegistryClient(f"http://127.0.0.1:{server.server_address[1]}") as client:
        gone = client.served(tag)
        assert gone.status == 0 and "refused" in gone.error
        assert client.catalog().status == 0


def test_cache_advice_for_v3s_redis() -> None:
    """v3 configures redis as ``addrs`` (one node, a cluster) or sentinels with a
    ``mastername`` (distribution#4306); the advice fits each."""
    one = cache_advice(Running(readonly=True, cache="redis", redis_addrs=("r1:7000",)))
    assert "redis-cli -h r1 -p 7000 --scan --pattern 'blobs::*'" in one
    cluster = cache_advice(
        Running(readonly=True, cache="redis", redis_addrs=("r1:7000", "r2:7000"))
    )
    assert "on each master that redis-cli -h r1 -p 7000 CLUSTER NODES lists" in cluster
    assert "redis-cli -c -h MASTER -p PORT --scan" in cluster
    sentinel = cache_advice(
        Running(readonly=True, cache="redis", redis_addrs=("s1:26379",), redis_master="main")
    )
    assert "redis-cli -h s1 -p 26379 SENTINEL get-master-addr-by-name main" in sentinel
    assert "(v3: manifests too)" in cache_advice(None)


@pytest.mark.parametrize(
    ("redis", "env", "addrs", "master"),
    [
        ("{addr: 'r:6379'}", {}, ("r:6379",), None),
        ("{addrs: ['a:7000', 'b:7000']}", {}, ("a:7000", "b:7000"), None),
        ("{addrs: ['s:26379'], mastername: main}", {}, ("s:26379",), "main"),
        ("{addr: 'r:6379'}", {"REGISTRY_REDIS_ADDRS": "[x:1, y:2]"}, ("x:1", "y:2"), None),
        ("{}", {"REGISTRY_REDIS_ADDR": "z:3"}, ("z:3",), None),
    ],
)
def test_redis_settings_of_both_versions(
    tmp_path: Path, redis: str, env: dict[str, str], addrs: tuple[str, ...], master: str | None
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(f"storage: {{filesystem: {{rootdirectory: /r}}}}\nredis: {redis}\n")
    found = running(config, env)
    assert (found.redis_addrs, found.redis_master) == (addrs, master)
