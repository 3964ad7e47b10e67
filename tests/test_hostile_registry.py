"""Registries that answer as an attacker or a broken proxy would (#21.8-12), served on
127.0.0.1: a pull-through cache is not read-only, no answer may take forever or be
held whole past 4 MiB, deep JSON is an answer not a traceback, and credentials never
go in clear to a token service the https registry names."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.errors import RegistryError
from regplan.registry.check import check
from regplan.registry.regclient import Credentials, Mode, RegistryClient
from tests.integration.realreg import tls_pair

Handler = Callable[[BaseHTTPRequestHandler], None]


@contextlib.contextmanager
def serving(handle: Handler, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A server on 127.0.0.1 answering every request with ``handle``; its URL."""

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            handle(self)

        def do_PUT(self) -> None:
            handle(self)

        def do_HEAD(self) -> None:
            handle(self)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    # polled often: shutdown() waits for the loop's next look (0.5 s by default)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def answer(status: int, body: bytes, content_type: str = "application/json") -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.command == "PUT":
            h.rfile.read(int(h.headers.get("Content-Length", 0)))
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handle


def test_a_pull_through_cache_is_refused(tmp_path: Path, demo_root: Path) -> None:
    """#21.8: proxy.remoteurl answers a push with a JSON 405 UNSUPPORTED (read-only mode
    with a plain-text 405): it writes on every uncached pull, so apply is refused."""
    body = b'{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}'
    with serving(answer(405, body)) as url:
        with RegistryClient(url) as client:
            assert client.probe().mode is Mode.PULL_THROUGH
        runner = CliRunner()
        key = tmp_path / "k"
        assert runner.invoke(cli, ["keygen", str(key)]).exit_code == 0
        plan = tmp_path / "p.json"
        made = ["plan", "--root", str(demo_root), "--key", str(key), "-o", str(plan)]
        assert runner.invoke(cli, [*made, "--image", "old/repo"]).exit_code == 0
        applied = runner.invoke(
            cli, ["apply", str(plan), "--trust", f"{key}.pub", "--registry-url", url]
        )
        assert applied.exit_code == 6, applied.output
        assert "pull-through cache" in applied.output
    plain = answer(405, b"Method not allowed\n", "text/plain")
    with serving(plain) as url, RegistryClient(url) as client:
        assert client.probe().mode is Mode.READ_ONLY


def trickle(stop: threading.Event) -> Handler:
    """Headers at once, then a byte every 0.05 s (until ``stop``)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.command == "PUT":
            h.rfile.read(int(h.headers.get("Content-Length", 0)))
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        try:
            for _ in range(1000):
                h.wfile.write(b" ")
                h.wfile.flush()
                if stop.wait(0.05):
                    return
        except OSError:
            pass

    return handle


def test_one_deadline_per_request(tmp_path: Path) -> None:
    """#21.9: a server that keeps sending a byte at a time never holds regplan past the
    deadline: the probe says it cannot tell (apply refuses), check says so in one line."""
    stop = threading.Event()
    try:
        with serving(trickle(stop)) as url, RegistryClient(url, deadline=0.6) as client:
            start = time.monotonic()
            probe = client.probe()
            assert probe.mode is Mode.UNKNOWN and "within 1 s" in probe.detail
            with pytest.raises(RegistryError, match="no whole answer to GET /v2/a/manifests/v1"):
                client.manifest("a", "v1")
            assert time.monotonic() - start < 6
    finally:
        stop.set()


def huge(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", str(400 << 20))
    h.end_headers()
    try:
        for _ in range(400):
            h.wfile.write(b"x" * (1 << 20))
    except OSError:
        pass


def test_an_answer_past_4_mib_is_refused_not_held() -> None:
    """#21.10: a 400 MB answer stops at 4 MiB read (apply took 844 MB RSS before)."""
    with serving(huge) as url, RegistryClient(url) as client:
        with pytest.raises(RegistryError, match="over 4 MiB"):
            client.manifest("a", "v1")
        assert client.probe().mode is Mode.UNKNOWN


def deep(depth: int) -> bytes:
    return b'{"manifests":' + b"[" * depth + b"]" * depth + b"}"


def test_deep_json_is_an_answer_not_a_traceback() -> None:
    """#21.11: a manifest nested 5,000 deep (the real registry accepts it), and a token
    service answering deeply nested JSON."""
    with serving(answer(200, deep(100_000))) as url, RegistryClient(url) as client:
        report = check(client, [("a", "v1")])
    [failure] = report.failures
    assert "nested too deeply" in failure.what

    def challenge(h: BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/token"):
            answer(200, b'{"token":' + b"[" * 100_000 + b"]" * 100_000 + b"}")(h)
            return
        h.send_response(401)
        h.send_header("WWW-Authenticate", f'Bearer realm="{base}/token",service="r"')
        h.send_header("Content-Length", "0")
        h.end_headers()

    with (
        serving(challenge) as base,
        RegistryClient(base) as client,
        pytest.raises(RegistryError, match="token service"),
    ):
        client.manifest("a", "v1")


def test_credentials_never_go_in_clear_to_a_downgraded_realm(tmp_path: Path) -> None:
    """#21.12: the registry over verified https names a plain-http token service on
    another port: regplan refuses, and the token service never hears from it."""
    asked: list[str] = []

    def token(h: BaseHTTPRequestHandler) -> None:
        asked.append(h.headers.get("Authorization", ""))
        answer(200, json.dumps({"token": "t"}).encode())(h)

    cert, key = tls_pair(tmp_path)
    with serving(token) as realm:

        def challenge(h: BaseHTTPRequestHandler, realm: str = realm) -> None:
            h.send_response(401)
            h.send_header("WWW-Authenticate", f'Bearer realm="{realm}/token",service="r"')
            h.send_header("Content-Length", "0")
            h.end_headers()

        with serving(challenge, tls=(cert, key)) as url:
            ops = Credentials(user="ops", password="s3cret")  # noqa: S106 (a test's)
            with (
                RegistryClient(url, credentials=ops, ca_cert=cert) as client,
                pytest.raises(RegistryError, match="not https while the registry is"),
            ):
                client.manifest("a", "v1")
    assert asked == []


def test_a_registry_under_a_prefix_is_asked_there() -> None:
    """http.prefix: the API answers at PREFIX/v2/, and so is it asked."""
    seen: list[str] = []

    def record(h: BaseHTTPRequestHandler) -> None:
        seen.append(h.path)
        answer(405, b"Method not allowed\n", "text/plain")(h)

    with serving(record) as url, RegistryClient(f"{url}/registry/") as client:
        assert client.probe().mode is Mode.READ_ONLY
    assert seen == ["/registry/v2/regplan-probe/readonly-check/manifests/probe"]
