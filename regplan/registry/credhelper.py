"""Asking a docker credential helper, as docker-credential-helpers' client does:
``docker-credential-NAME get`` found on PATH, the server's ``host[:port]`` on stdin (no
newline), JSON ``{"ServerURL", "Username", "Secret"}`` on stdout, and ``credentials not
found in native keychain`` with a non-zero exit for none.

Bounded: an answer within REGPLAN_CREDENTIAL_HELPER_TIMEOUT seconds (60) and 1 MiB, else
the helper is stopped with whatever it started (its own session). Whatever goes wrong is
one line naming the helper and the host, never the helper's output (a failing helper may
print what it holds).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from regplan.errors import RegistryError

__all__ = ["CredentialHelperError", "ask", "helper_timeout"]

log = logging.getLogger(__name__)

PREFIX = "docker-credential-"
NOT_FOUND = "credentials not found in native keychain"
"""docker-credential-helpers' ``errCredentialsNotFoundMessage``: no credentials, no error."""
TIMEOUT_ENV = "REGPLAN_CREDENTIAL_HELPER_TIMEOUT"
TIMEOUT = 60.0
"""Seconds a helper may take (one may wait for a keychain's unlock dialog)."""
MAX_ANSWER = 1 << 20
"""Bytes of a helper's stdout read at the most (an answer is a few hundred)."""


class CredentialHelperError(RegistryError):
    """A docker credential helper that could not be run or gave no readable answer."""


def ask(name: str, host: str) -> tuple[str, str] | None:
    """``docker-credential-NAME get`` for ``host``: (Username, Secret), None for none."""
    program = f"{PREFIX}{name}"
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
    status, out = run(found, program, host)
    said = out.decode("utf-8", errors="replace").strip()
    if status != 0 and said == NOT_FOUND:
        log.debug("%s has no credentials for %s", program, host)
        return None
    if status != 0:
        raise CredentialHelperError(
            f"credential helper {program} failed for {host} (exit {status}); its output is "
            f"not shown (it may hold a secret): try `printf %s {shlex.quote(host)} | {program} get`"
        )
    return answer(said, program, host)


def run(path: str, program: str, host: str) -> tuple[int, bytes]:
    """(exit status, stdout) of ``path get`` with the host on stdin, within the timeout and
    MAX_ANSWER; past either the helper is killed with what it started."""
    timeout = helper_timeout()
    until = time.monotonic() + timeout
    proc = _start(path, program)
    assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 (PIPEs given)
    with contextlib.suppress(BrokenPipeError):  # it exited without reading: its status says
        proc.stdin.write(host.encode())
        proc.stdin.close()
    out = bytearray()
    reader = threading.Thread(target=_read, args=(proc.stdout, out), daemon=True)
    reader.start()
    reader.join(timeout)
    status = None
    if not reader.is_alive() and len(out) <= MAX_ANSWER:  # its whole answer: now its exit
        with contextlib.suppress(subprocess.TimeoutExpired):  # still running: no answer
            status = proc.wait(max(0.0, until - time.monotonic()))
    if status is None:
        _kill(proc)
        reader.join(1)
        if len(out) > MAX_ANSWER:
            raise CredentialHelperError(
                f"credential helper {program} answered {host} with more than 1 MiB (not shown)"
            )
        raise CredentialHelperError(
            f"credential helper {program} gave no answer for {host} within {timeout:g} s "
            f"(stopped; {TIMEOUT_ENV} sets the wait)"
        )
    proc.stdout.close()
    return status, bytes(out)


def _start(path: str, program: str) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(  # the helper docker would run, from PATH
            [path, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped with what it starts
        )
    except OSError as e:
        raise CredentialHelperError(
            f"credential helper {program} could not run: {e.strerror or type(e).__name__}"
        ) from None


def _read(stream: IO[bytes], out: bytearray) -> None:
    """Into ``out`` until the end or past MAX_ANSWER (then the rest is never read)."""
    read1 = getattr(stream, "read1", stream.read)
    while len(out) <= MAX_ANSWER:
        chunk = read1(1 << 16)
        if not chunk:
            return
        out += chunk


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop the helper and its process group (its own session: only what it started)."""
    killpg = getattr(os, "killpg", None)  # POSIX; elsewhere the helper alone
    try:
        killpg(proc.pid, signal.SIGKILL) if killpg else proc.kill()
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


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


def answer(text: str, program: str, host: str) -> tuple[str, str]:
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
    return user, secret


def _field(doc: dict[str, Any], name: str) -> object:
    """``doc[name]``, else a key equal to it but for case; "" when there is none."""
    if name in doc:
        return doc[name]
    return next((v for k, v in doc.items() if k.lower() == name.lower()), "")
