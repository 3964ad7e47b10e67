"""Registry credentials as docker finds them, from ``$DOCKER_CONFIG/config.json`` (else
``~/.docker/config.json``), in docker/cli's order (``configfile.GetCredentialsStore``):

1. ``credHelpers[HOST]``, the helper named for the registry's ``host[:port]``, else
2. ``credsStore``, the default helper: either one is asked, ``docker-credential-NAME
   get`` from PATH with the host on stdin, and its answer is the whole answer (when it
   has no credentials for the host the registry is asked anonymously; ``auths`` is not
   consulted, as docker does not), else
3. ``auths[HOST]``: ``auth`` (base64 ``user:password``), ``username``/``password``, or
   ``identitytoken``.

A helper answers JSON ``{"ServerURL", "Username", "Secret"}``; the user ``<token>``
means the secret is an identity token (an OAuth2 refresh token for the registry's token
service), and ``credentials not found in native keychain`` with a non-zero exit means
none. Whatever goes wrong is one line naming the helper and the host, never its output
(a failing helper may print what it holds): the secret reaches no message, log or record.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from base64 import b64decode
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import attrs

from regplan.errors import RegistryError

__all__ = ["CredentialHelperError", "Credentials", "config_path", "docker_credentials"]

log = logging.getLogger(__name__)

HELPER_PREFIX = "docker-credential-"
NOT_FOUND = "credentials not found in native keychain"
"""docker-credential-helpers' ``errCredentialsNotFoundMessage``: no credentials, no error."""
TOKEN_USER = "<token>"  # noqa: S105 (the user name that marks an identity token)
TIMEOUT_ENV = "REGPLAN_CREDENTIAL_HELPER_TIMEOUT"
TIMEOUT = 60.0
"""Seconds a helper may take (one may wait for a keychain's unlock dialog)."""


@attrs.frozen(kw_only=True)
class Credentials:
    """What the registry (or its token service) is shown; the secrets never in a repr."""

    user: str
    password: str = attrs.field(repr=False)
    identity_token: str = attrs.field(default="", repr=False)
    """An OAuth2 refresh token for the token service (a helper's ``<token>`` user)."""


class CredentialHelperError(RegistryError):
    """A docker credential helper that could not be run or gave no readable answer."""


def config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (docker's)."""
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def docker_credentials(url: str, config: Path | None = None) -> Credentials | None:
    """The credentials docker would use for the registry at ``url`` (its ``host[:port]``);
    None when there are none, or the config is missing or not JSON (anonymous)."""
    path = config or config_path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    host = hostname(url)
    helper = helper_for(doc, host, path)
    if helper:
        return ask_helper(helper, host)
    return from_auths(doc.get("auths"), host)


def hostname(url: str) -> str:
    """``https://reg.example:5000/prefix`` (or ``reg.example:5000/v2/``) -> ``reg.example:5000``:
    docker's ``ConvertToHostname``, the key of ``credHelpers`` and ``auths``."""
    return urlparse(url).netloc if "://" in url else url.split("/", maxsplit=1)[0]


def helper_for(doc: dict[str, Any], host: str, path: Path) -> str:
    """The helper's NAME for ``host`` ("" for none): ``credHelpers[host]`` if the host is
    there (even "", which turns the default off for it, as docker reads it), else
    ``credsStore``. A name with a path separator is refused: docker runs only
    ``docker-credential-NAME`` found on PATH."""
    helpers = doc.get("credHelpers")
    if isinstance(helpers, dict) and host in helpers:
        name, key = helpers[host], f"credHelpers[{host!r}]"
    else:
        name, key = doc.get("credsStore", ""), "credsStore"
    if name is None:
        return ""
    if not isinstance(name, str):
        raise CredentialHelperError(f"{path}: {key} is not a helper's name (a string)")
    if any(sep in name for sep in ("/", "\\", os.sep, os.altsep or "/", "\0")):
        raise CredentialHelperError(
            f"{path}: {key} {name!r} is not a helper's name: docker runs "
            f"{HELPER_PREFIX}NAME from PATH, never a path"
        )
    return name


def from_auths(auths: object, host: str) -> Credentials | None:
    """``auths``' entry for ``host``: its exact key first, else the first whose hostname is
    the host (``https://host/v1/``), as docker's file store looks."""
    if not isinstance(auths, dict):
        return None
    entry = auths.get(host)
    if entry is None:
        entry = next((v for k, v in auths.items() if hostname(k) == host), None)
    if not isinstance(entry, dict):
        return None
    user, password = entry.get("username"), entry.get("password")
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            user, _, password = b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
    token = entry.get("identitytoken")
    return _credentials(
        user if isinstance(user, str) else "",
        password if isinstance(password, str) else "",
        token if isinstance(token, str) else "",
    )


def _credentials(user: str, password: str, token: str) -> Credentials | None:
    if not (user or password or token):
        return None
    return Credentials(user=user, password=password, identity_token=token)


def ask_helper(name: str, host: str) -> Credentials | None:
    """``docker-credential-NAME get`` for ``host``: its credentials, None for none."""
    program = f"{HELPER_PREFIX}{name}"
    found = shutil.which(program)
    if found is None:
        raise CredentialHelperError(
            f"credential helper {program} (for {host}, from the docker config) is not on PATH"
        )
    if not Path(found).is_absolute():  # a relative PATH entry: docker (Go's LookPath) refuses it
        raise CredentialHelperError(
            f"credential helper {program} was found only through a relative PATH entry "
            f"({found!r}): docker does not run it from there, nor does regplan"
        )
    log.debug("asking %s for %s's credentials", program, host)
    status, out = _run(found, program, host)
    said = out.decode("utf-8", errors="replace").strip()
    if status != 0 and said == NOT_FOUND:
        log.debug("%s has no credentials for %s", program, host)
        return None
    if status != 0:
        raise CredentialHelperError(
            f"credential helper {program} failed for {host} (exit {status}); its output is "
            f"not shown (it may hold a secret): try `printf %s {host} | {program} get`"
        )
    return _answer(said, program, host)


def _run(path: str, program: str, host: str) -> tuple[int, bytes]:
    """(exit status, stdout) of ``path get`` with the host on stdin, within the timeout;
    a helper past it is killed with what it started (its own process group)."""
    timeout = helper_timeout()
    try:
        proc = subprocess.Popen(  # the helper docker would run, from PATH
            [path, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as e:
        raise CredentialHelperError(
            f"credential helper {program} could not run: {e.strerror or type(e).__name__}"
        ) from None
    try:
        out, _ = proc.communicate(host.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise CredentialHelperError(
            f"credential helper {program} gave no answer for {host} within {timeout:g} s "
            f"(stopped; {TIMEOUT_ENV} sets the wait)"
        ) from None
    return proc.returncode, out


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop the helper and its own process group (start_new_session: only what it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def helper_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise CredentialHelperError(f"{TIMEOUT_ENV}={text!r}: expected seconds, e.g. 60")
    return seconds


def _answer(text: str, program: str, host: str) -> Credentials | None:
    """The helper's JSON: ``Username`` and ``Secret`` strings (keys matched regardless of
    case, and the first JSON value read, as Go's decoder does)."""
    bad = f"credential helper {program} answered {host} with something other than"
    try:
        doc, _ = json.JSONDecoder().raw_decode(text)
    except (ValueError, RecursionError):
        raise CredentialHelperError(f"{bad} JSON (not shown)") from None
    if not isinstance(doc, dict):
        raise CredentialHelperError(f"{bad} a JSON object (not shown)")
    user, secret = _field(doc, "Username"), _field(doc, "Secret")
    if not isinstance(user, str) or not isinstance(secret, str):
        raise CredentialHelperError(f"{bad} a Username and a Secret that are strings")
    if user == TOKEN_USER:
        return _credentials("", "", secret)
    return _credentials(user, secret, "")


def _field(doc: dict[str, Any], name: str) -> object:
    """``doc[name]``, else a key equal to it but for case; "" when there is none."""
    if name in doc:
        return doc[name]
    return next((v for k, v in doc.items() if k.lower() == name.lower()), "")


def refresh_grant(identity_token: str, query: dict[str, str]) -> bytes:
    """The form an identity token is traded for an access token with (docker's
    ``fetchTokenWithOAuth``): ``grant_type=refresh_token`` with the challenge's service
    and scope, sent by POST to the token service's realm."""
    form = {
        "grant_type": "refresh_token",
        "refresh_token": identity_token,
        "client_id": "regplan",
        **{k: query[k] for k in ("service", "scope") if query.get(k)},
    }
    return urlencode(form).encode()
