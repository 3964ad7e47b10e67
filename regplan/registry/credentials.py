"""Registry credentials as docker finds them, in docker/cli's order
(``configfile.GetCredentialsStore``):

0. ``auths[HOST]`` of the config JSON in ``DOCKER_AUTH_CONFIG`` (CI systems set it), then
   from ``$DOCKER_CONFIG/config.json`` (else ``~/.docker/config.json``):
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
none (``credhelper``). The secret reaches no message, log or record.
"""

from __future__ import annotations

import json
import logging
import os
from base64 import b64decode
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import attrs

from regplan.registry import credhelper
from regplan.registry.credhelper import PREFIX, CredentialHelperError

__all__ = ["CredentialHelperError", "Credentials", "config_path", "docker_credentials"]

log = logging.getLogger(__name__)

TOKEN_USER = "<token>"  # noqa: S105 (the user name that marks an identity token)
ENV_CONFIG = "DOCKER_AUTH_CONFIG"


@attrs.frozen(kw_only=True)
class Credentials:
    """What the registry (or its token service) is shown; the secrets never in a repr."""

    user: str
    password: str = attrs.field(repr=False)
    identity_token: str = attrs.field(default="", repr=False)
    """An OAuth2 refresh token for the token service (a helper's ``<token>`` user)."""


def config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (docker's)."""
    folder = os.environ.get("DOCKER_CONFIG")
    return (Path(folder) if folder else Path.home() / ".docker") / "config.json"


def docker_credentials(url: str, config: Path | None = None) -> Credentials | None:
    """The credentials docker would use for the registry at ``url`` (its ``host[:port]``);
    None when there are none, or the config is missing or not JSON (anonymous)."""
    host = hostname(url)
    inline = _inline(host)
    if inline is not None:
        return from_auths({host: inline}, host)
    path = config or config_path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    helper = helper_for(doc, host, path)
    if helper:
        return ask_helper(helper, host)
    return from_auths(doc.get("auths"), host)


def _inline(host: str) -> dict[str, Any] | None:
    """``DOCKER_AUTH_CONFIG``'s ``auths`` entry for exactly ``host`` (docker reads this
    config, given whole in the variable, before its file and helpers); None without one."""
    text = os.environ.get(ENV_CONFIG, "")
    try:
        auths = json.loads(text).get("auths") if text else None
    except (ValueError, RecursionError, AttributeError):
        return None
    entry = auths.get(host) if isinstance(auths, dict) else None
    return entry if isinstance(entry, dict) else None


def ask_helper(name: str, host: str) -> Credentials | None:
    """The helper's credentials for ``host`` (its ``<token>`` user: an identity token)."""
    said = credhelper.ask(name, host)
    if said is None:
        return None
    user, secret = said
    if user == TOKEN_USER:
        return _credentials("", "", secret)
    return _credentials(user, secret, "")


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
            f"{PREFIX}NAME from PATH, never a path"
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
