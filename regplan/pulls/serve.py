"""``pulls serve``: the HTTP receiver distribution's ``notifications.endpoints`` post to.

Any path takes a POST of an envelope (``events.MEDIA_TYPE``); its manifest pulls are
committed to the store before the answer is 200, so a receiver killed before answering
loses nothing (the registry sends the envelope again, and a pull already recorded, by
its key, counts once). Anything else is 4xx with one line in the log, nothing recorded:
over ``MAX_BODY``, not the media type, not an envelope, an event without what a pull
needs, a missing or wrong token. The records' span (source ``notifications``) runs from
the receiver's start and is extended on every envelope and every ``HEARTBEAT``.
"""

from __future__ import annotations

import hmac
import http.server
import logging
import sys
import threading
import time
from pathlib import Path

from regplan.pulls import events
from regplan.pulls.pull import Pull, PullsError
from regplan.pulls.store import Store

log = logging.getLogger(__name__)

MAX_BODY = 4 << 20
"""An envelope larger than this is refused (distribution sends a few events at a time)."""
HEARTBEAT = 60.0
"""Seconds between two extensions of the span while nothing arrives."""
SOURCE = "notifications"


class Receiver:
    """One store behind one lock: the HTTP threads record through it."""

    def __init__(self, store: Store, token: str | None) -> None:
        self.store = store
        self.token = token
        self.lock = threading.Lock()
        self.started = time.time()
        self.touch()

    def touch(self, pulls: list[Pull] | None = None) -> int:
        """Record ``pulls`` (none: only extend the span to now); how many were new."""
        with self.lock:
            return self.store.add(pulls or (), (SOURCE, self.started, time.time()))

    def allowed(self, header: str | None) -> bool:
        if self.token is None:
            return True
        return header is not None and hmac.compare_digest(
            header.encode(), f"Bearer {self.token}".encode()
        )


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Requests answered 200 are not logged; refusals are (``_refuse``)."""

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, why: str) -> None:
        log.warning(
            "%s %s from %s: %d %s",
            self.command,
            self.path[:200],
            self.client_address[0],
            status,
            why,
        )
        self.close_connection = True
        self._answer(status, why)

    def do_GET(self) -> None:
        self._refuse(405, "POST notification envelopes here")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        if not receiver.allowed(self.headers.get("Authorization")):
            self._refuse(401, "missing or wrong token")
            return
        media = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip()
        if media not in events.MEDIA_TYPES:
            self._refuse(415, f"media type {media[:80]!r} is not {events.MEDIA_TYPE} (or v2)")
            return
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            self._refuse(411, "Content-Length required")
            return
        if length > MAX_BODY or length < 0:
            self._refuse(413, f"body of {length} bytes is over the {MAX_BODY} byte cap")
            return
        body = self.rfile.read(length)
        try:
            pulls = events.pulls(body)
        except events.EnvelopeError as e:
            self._refuse(400, str(e))
            return
        try:
            receiver.touch(pulls)
        except PullsError as e:
            log.error("cannot record: %s", e)  # noqa: TRY400 (one line, no traceback)
            self.close_connection = True
            self._answer(503, "cannot record now; send again")
            return
        self._answer(200, f"recorded {len(pulls)} pulls")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """One line, not socketserver's traceback: a client that closed its connection
        (the registry drops idle ones) is routine."""
        error = sys.exc_info()[1]
        routine = isinstance(error, (ConnectionResetError, BrokenPipeError))
        log.log(
            logging.DEBUG if routine else logging.WARNING,
            "connection from %s: %s",
            client_address[0],
            error,
        )


def server_for(store: Store, host: str, port: int, token: str | None) -> _Server:
    """The HTTP server over ``store`` (bound, not yet serving)."""
    server = _Server((host, port), _Handler)
    server.receiver = Receiver(store, token)
    return server


def serve(db: Path, host: str, port: int, token: str | None) -> None:
    """Receive until interrupted (SIGTERM, SIGINT, or killed: what was answered 200 is
    on disk)."""
    with Store.open(db, create=True) as store:
        try:
            server = server_for(store, host, port, token)
        except OSError as e:
            raise PullsError(f"cannot listen on {host}:{port}: {e.strerror}") from None
        beat = threading.Thread(target=_heartbeat, args=(server.receiver,), daemon=True)
        beat.start()
        log.warning("receiving notifications on %s:%d into %s", host, server.server_address[1], db)
        try:
            server.serve_forever()
        finally:
            server.server_close()


def _heartbeat(receiver: Receiver) -> None:
    while True:
        time.sleep(HEARTBEAT)
        try:
            receiver.touch()
        except PullsError as e:
            log.error("cannot extend the records' span: %s", e)  # noqa: TRY400
