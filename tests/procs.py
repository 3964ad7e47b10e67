"""Local servers the tests start (moto, Azurite, the GCS emulator): started until their
URL answers, stopped with SIGTERM, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

Proc = subprocess.Popen[bytes]


def start(
    args: list[str], log: Path, url: str, *, env: Mapping[str, str] | None = None, wait: float = 60
) -> Proc:
    """Run ``args`` (output to ``log``) until ``url`` answers, with any HTTP status."""
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return proc
        except urllib.error.HTTPError:
            return proc  # it answers
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{args[0]} did not start; log in {log}")


def stop(proc: Proc | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
