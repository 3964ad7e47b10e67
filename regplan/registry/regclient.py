"""The running registry, through its HTTP API only: the one seam to it.

A small client over httpx for what regplan asks a registry: is it there, does
it accept writes (without writing anything), and what does it serve (manifests
by tag or digest, blobs by HEAD). Authentication as operators have it: basic
auth, and the registry token (bearer) flow, with credentials from the command
line or as docker finds them (``credentials``: its config's auths and credential
helpers); TLS with a CA file, or unverified on request.
"""

from __future__ import annotations

import base64
import errno
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from urllib.parse import urlparse

import attrs
import httpx

from regplan.errors import RegistryError
from regplan.registry.credentials import Credentials, docker_credentials, refresh_grant
from regplan.registry.guard import Ask, Catalog, Mode, Probe, Served

__all__ = [  # Mode and Probe live with the guard's decision (registry/guard.py)
    "Credentials",
    "Mode",
    "Probe",
    "RegistryClient",
    "RegistrySlow",
    "RegistryUnreachable",
    "docker_credentials",
]

log = logging.getLogger(__name__)

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
ACCEPTS = {"Accept": ACCEPT}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

PROBE_REPOSITORY = "regplan-probe/readonly-check"
PROBE_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 2,
        },
        "layers": [],
    }
).encode()
"""A manifest whose config blob exists nowhere: a writable registry refuses it with
400 MANIFEST_BLOB_UNKNOWN before it stores anything, a read-only one with 405."""


MAX_BODY = 4 << 20
"""Bytes of any answer read at the most (distribution caps manifests at 4 MiB): a
bigger one is refused, never held."""
DEADLINE = 30.0
"""Seconds one request may take in all, whatever pace the server answers at."""


@attrs.frozen(kw_only=True)
class Answer:
    """A registry's answer, read whole within MAX_BODY and DEADLINE."""

    status: int
    headers: httpx.Headers
    body: bytes
    what: str
    """``METHOD /path``, for messages."""


def read_bounded(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    params: Mapping[str, str] | None = None,
    basic_only: bool = False,
    deadline: float = DEADLINE,
) -> Answer:
    """``method url`` through ``client``, its body read piece by piece: past MAX_BODY
    bytes or ``deadline`` seconds it raises RegistrySlow (one line), never holds more.
    ``basic_only``: without the client's challenge-answering auth (a token service)."""
    until = time.monotonic() + deadline
    auth = None if basic_only else httpx.USE_CLIENT_DEFAULT
    with client.stream(
        method, url, headers=headers, content=content, params=params, auth=auth
    ) as r:
        what = f"{method} {r.request.url.path}"
        body = bytearray()
        for chunk in r.iter_bytes():
            body += chunk
            if len(body) > MAX_BODY:
                raise RegistrySlow(f"{r.request.url.host}: the answer to {what} is over 4 MiB")
            if time.monotonic() > until:
                raise RegistrySlow(
                    f"{r.request.url.host}: no whole answer to {what} within {deadline:.0f} s"
                )
        return Answer(status=r.status_code, headers=r.headers, body=bytes(body), what=what)


class _Auth(httpx.Auth):
    """Answer the registry's 401 challenge: Basic, or Bearer through its token service
    (a token kept per repository, so a check of thousands of images asks once for each)."""

    def __init__(
        self, credentials: Credentials | None, client: httpx.Client, *, https_only: bool
    ) -> None:
        self.credentials = credentials
        self.client = client
        self.https_only = https_only
        """The registry was reached over verified https: a token service over plain
        http would receive the credentials in clear (never downgrade)."""
        self.tokens: dict[str, str] = {}
        """repository -> its latest token (what a request to it sends first)."""
        self.granted: dict[str, str] = {}
        """scope -> the token the service gave for it."""
        self.fetching: dict[str, threading.Lock] = {}
        self.lock = threading.Lock()

    def _basic(self) -> str:
        c = self.credentials or Credentials(user="", password="")
        return "Basic " + base64.b64encode(f"{c.user}:{c.password}".encode()).decode()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self.lock:
            known = self.tokens.get(_repository(request.url.path))
        if known is not None:  # this repository's token from an earlier challenge
            request.headers["Authorization"] = known
        response = yield request
        if response.status_code != 401:
            return
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic" and self.credentials is not None:
            request.headers["Authorization"] = self._basic()
            yield request
        elif scheme.lower() == "bearer":
            request.headers["Authorization"] = self._bearer(_params(params))
            yield request

    def _bearer(self, params: Mapping[str, str]) -> str:
        """A token for the challenge's scope, from the token service (basic credentials if
        any); threads that meet the same challenge at once wait for one token."""
        scope = params.get("scope", "")
        key = scope.split(":")[1] if scope.count(":") >= 2 else scope
        with self.lock:
            pending = self.fetching.setdefault(scope, threading.Lock())
        with pending:
            with self.lock:
                fresh = self.granted.get(scope)
            if fresh is not None:
                return fresh
            header = self._fetch(params, scope)
            with self.lock:
                self.granted[scope] = header
                self.tokens[key] = header
        return header

    def _fetch(self, params: Mapping[str, str], scope: str) -> str:
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        headers = {"Authorization": self._basic()} if self.credentials is not None else {}
        realm = params.get("realm", "")
        if self.https_only and urlparse(realm).scheme != "https":
            raise RegistryError(
                f"the registry's token service {realm!r} is not https while the registry is: "
                "regplan does not send credentials in clear (--insecure allows it)"
            )
        refresh = self.credentials.identity_token if self.credentials is not None else ""
        method, content, asked = "GET", None, query
        if refresh:  # an identity token: docker's OAuth2 refresh-token grant, by POST
            method, headers, content, asked = "POST", FORM, refresh_grant(refresh, query), {}
        try:
            r = read_bounded(
                self.client, method, realm, params=asked, headers=headers, content=content,
                basic_only=True,
            )  # fmt: skip
            body = json.loads(r.body) if r.status == 200 else {}
        except (httpx.HTTPError, ValueError, RecursionError) as e:
            raise RegistryError(f"token service {realm}: {e or type(e).__name__}") from None
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise RegistryError(
                f"token service {realm} gave no token for {scope or 'the registry'} "
                f"({r.status}): give --registry-user with REGPLAN_REGISTRY_PASSWORD, or "
                "`docker login`, for a user that may pull"
            )
        return f"Bearer {token}"


def _repository(path: str) -> str:
    """``[/prefix]/v2/team/app/manifests/v1`` -> ``team/app`` (what a token's scope names)."""
    parts = path.partition("/v2/")[2].split("/")
    for i, part in enumerate(parts):
        if part in ("manifests", "blobs", "tags"):
            return "/".join(parts[:i])
    return ""


def _params(text: str) -> dict[str, str]:
    """``realm="https://auth",service="registry",scope="repository:a:pull"``"""
    out: dict[str, str] = {}
    for part in _split_commas(text):
        key, _, value = part.strip().partition("=")
        out[key.strip().lower()] = value.strip().strip('"')
    return out


def _split_commas(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current] if current else parts


class RegistryClient:
    """What regplan asks one registry. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        url: str,
        *,
        credentials: Credentials | None = None,
        ca_cert: Path | None = None,
        insecure: bool = False,
        timeout: float = 10.0,
        deadline: float = DEADLINE,
    ) -> None:
        parsed = urlparse(url if "://" in url else f"https://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RegistryError(f"registry URL {url!r}: expected http(s)://HOST[:PORT][/PREFIX]")
        self.deadline = deadline
        prefix = parsed.path.rstrip("/")  # http.prefix: the API is at PREFIX/v2/
        self.url = f"{parsed.scheme}://{parsed.netloc}{prefix}"
        verify: bool | ssl.SSLContext = not insecure
        if ca_cert is not None:
            verify = ssl.create_default_context(cafile=str(ca_cert))
        self._http = httpx.Client(base_url=self.url, verify=verify, timeout=timeout)
        https_only = parsed.scheme == "https" and not insecure
        self._http.auth = _Auth(
            credentials or docker_credentials(self.url), self._http, https_only=https_only
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Answer:
        try:
            return read_bounded(
                self._http, method, path, headers=headers, content=content, deadline=self.deadline
            )
        except httpx.TransportError as e:
            kind = NoAnswer if nothing_answered(e) else RegistryUnreachable
            raise kind(f"{self.url}: {e or type(e).__name__}") from e

    def probe(self) -> Probe:
        """Stopped, read-only or writable, found without writing anything (PROBE_MANIFEST)."""
        try:
            r = self._send(
                "PUT",
                f"/v2/{PROBE_REPOSITORY}/manifests/probe",
                content=PROBE_MANIFEST,
                headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
            )
        except NoAnswer as e:  # proves nothing: a stopped registry and a typo look alike
            return Probe(mode=Mode.UNREACHABLE, detail=str(e).removeprefix(f"{self.url}: "))
        except RegistryUnreachable as e:
            # a TLS failure, or a server that took the connection and said nothing (or too
            # much, too slowly): something answered that regplan cannot read
            return Probe(mode=Mode.UNKNOWN, detail=str(e).removeprefix(f"{self.url}: "))
        if r.status == 405 and _error_codes(r.body) == {"UNSUPPORTED"}:
            return Probe(
                mode=Mode.PULL_THROUGH,
                detail="writes answer 405 UNSUPPORTED, as a pull-through cache (proxy.remoteurl) "
                "does: it writes to its storage on every uncached pull",
            )
        if r.status == 405:
            return Probe(mode=Mode.READ_ONLY, detail="writes answer 405 Method Not Allowed")
        if r.status in (400, 404):
            return Probe(
                mode=Mode.WRITABLE, detail=f"a manifest PUT reached validation ({r.status})"
            )
        return Probe(mode=Mode.UNKNOWN, detail=f"a manifest PUT answered {r.status}")

    def manifest(self, repo: str, ref: str) -> tuple[int, bytes]:
        """(status, body) of GET /v2/<repo>/manifests/<ref> with every manifest type accepted."""
        r = self._authorized(
            self._send("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        )
        return r.status, r.body

    def served(self, ask: Ask) -> Served:
        """What HEAD /v2/<repo>/manifests/<ref> says the manifest is (status 0: no answer)."""
        try:
            r = self._send("HEAD", f"/v2/{ask.repo}/manifests/{ask.ref}", headers=ACCEPTS)
        except RegistryError as e:
            return Served(ask=ask, status=0, error=str(e))
        return Served(ask=ask, status=r.status, digest=r.headers.get("Docker-Content-Digest"))

    def catalog(self) -> Catalog:
        """The first page of GET /v2/_catalog (status 0: no answer)."""
        try:
            r = self._send("GET", "/v2/_catalog?n=100")
        except RegistryError as e:
            return Catalog(status=0, error=str(e))
        try:
            names = json.loads(r.body).get("repositories") if r.status == 200 else []
        except (ValueError, RecursionError, AttributeError):
            return Catalog(status=0, error=f"{r.what} answered {r.status} without a catalog")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return Catalog(status=0, error=f"{r.what} answered {r.status} without a catalog")
        return Catalog(status=r.status, names=tuple(names))

    def blob_status(self, repo: str, digest: str) -> int:
        """The status of HEAD /v2/<repo>/blobs/<digest> (redirects to storage not followed)."""
        return self._authorized(self._send("HEAD", f"/v2/{repo}/blobs/{digest}")).status

    def _authorized(self, r: Answer) -> Answer:
        """A read the registry refuses to this client is no answer about the image."""
        if r.status in (401, 403):
            raise RegistryError(
                f"{self.url} refused {r.what} ({r.status}): give --registry-user with "
                "REGPLAN_REGISTRY_PASSWORD, or `docker login` for a user that may pull"
            )
        return r


class RegistryUnreachable(RegistryError):  # noqa: N818 (it says what happened)
    """No whole answer from the registry's address."""


class NoAnswer(RegistryUnreachable):
    """No one took the connection (refused, no such host, no connection in time)."""


class RegistrySlow(RegistryUnreachable):
    """An answer past MAX_BODY or DEADLINE: as good as none (the probe cannot tell)."""


def nothing_answered(e: httpx.TransportError) -> bool:
    """Whether a failed request met no one: the connection refused, the host's name
    unknown or unreachable, no connection within the timeout. (A read timeout, a reset
    or a TLS failure means something took the connection: not this.)"""
    if isinstance(e, httpx.ConnectTimeout):
        return True
    if not isinstance(e, httpx.ConnectError):
        return False
    cause: BaseException | None = e
    while cause is not None and type(cause).__module__.partition(".")[0] in ("httpx", "httpcore"):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, (ConnectionRefusedError, socket.gaierror)):
        return True
    unreachable = (errno.ENETUNREACH, errno.EHOSTUNREACH)
    return type(cause) is OSError and cause.errno in unreachable


def _error_codes(body: bytes) -> set[str]:
    """The ``errors[].code`` of a distribution error body (empty when it is not one)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return set()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return set()
    return {str(e.get("code")) for e in errors if isinstance(e, dict)}
