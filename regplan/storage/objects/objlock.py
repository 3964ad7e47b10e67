"""One apply, rollback or purge at a time on an object-store registry: a lease object.

``regplan-state/lock`` is created with ``If-None-Match: *`` and names its holder
and an expiry. Every later write of it is a compare-and-swap on the etag its
writer last saw (``If-Match``): renewing replaces only the holder's own lock,
breaking a stale lock replaces only that stale lock, and release deletes only
the holder's own. So two breakers cannot both hold it, and a holder whose lock
was broken learns so at its next renewal and stops.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from regplan.errors import LockHeldError
from regplan.storage.objects.bucket import Bucket, Exists

log = logging.getLogger(__name__)

LOCK_TTL = 3600.0
"""Seconds a lock holds without being renewed (apply renews it after every batch)."""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dead_here(info: Mapping[str, Any]) -> bool:
    """The holder ran on this host and its process is gone (killed, crashed)."""
    if info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, TypeError, OverflowError):
        return False
    return False


class Lock:
    """The lease; ``break_stale``: take over a lock whose holder is gone (only when
    asked: ``--break-lock``)."""

    def __init__(
        self, bucket: Bucket, *, command: str, now: float, break_stale: bool = False
    ) -> None:
        self.bucket = bucket
        self.key = bucket.storage.state_prefix + "lock"
        self.where = bucket.url(self.key)
        self.command = command
        self.now = now
        self.break_stale = break_stale
        self.etag: str | None = None
        """The etag of the lock object this process wrote last (None: not held)."""

    def _body(self, now: float) -> bytes:
        return json.dumps(
            {
                "command": self.command,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": _iso(self.now),
                "expires": _iso(now + LOCK_TTL),
                "expires_at": now + LOCK_TTL,
            }
        ).encode()

    def __enter__(self) -> Lock:
        try:
            self.etag = self.bucket.put(self.key, self._body(self.now), new=True)
        except Exists:
            self._taken()
        return self

    def _taken(self) -> None:
        try:
            raw, stale = self._read()
        except FileNotFoundError:  # released meanwhile: try once more
            try:
                self.etag = self.bucket.put(self.key, self._body(self.now), new=True)
            except Exists:
                raise LockHeldError(f"another regplan holds {self.where}") from None
            return
        holder, expired, expires = _describe(raw, self.now)
        if not expired:
            raise LockHeldError(f"another regplan {holder} holds {self.where} until {expires}")
        if not self.break_stale:
            raise LockHeldError(
                f"another regplan {holder} holds {self.where}, but it is gone (its process is "
                f"dead or its lease ran out at {expires}): run again with --break-lock"
            )
        log.warning("breaking the stale lock of %s", holder)
        try:  # replace that stale lock and no other: a second breaker loses here
            self.etag = self.bucket.put(self.key, self._body(self.now), if_match=stale)
        except Exists:
            raise LockHeldError(
                f"another regplan took {self.where} as the stale lock was broken"
            ) from None

    def _read(self) -> tuple[bytes, str]:
        out = io.BytesIO()
        etag = self.bucket.get_to(self.key, out, 4096)
        return out.getvalue(), etag

    def renew(self, now: float) -> None:
        """Extend the lease (apply does after every batch); LockHeldError when another
        regplan broke it meanwhile (then this one must stop: the journal lets the same
        command finish later)."""
        if self.etag is None:
            return
        try:
            self.etag = self.bucket.put(self.key, self._body(now), if_match=self.etag)
        except Exists:
            self.etag = None
            raise LockHeldError(
                f"{self.where} was broken by another regplan while this one held it; "
                "stopped (run the same command again to finish)"
            ) from None

    def __exit__(self, *_: object) -> None:
        if self.etag is None:
            return
        etag, self.etag = self.etag, None
        try:
            self.bucket.delete_one(self.key, if_match=etag)
        except Exists:
            log.warning("%s is no longer this process's lock: left as it is", self.where)


def _describe(raw: bytes, now: float) -> tuple[str, bool, str]:
    """(who holds it, whether it is stale, when it expires) of a lock's bytes."""
    try:
        info = json.loads(raw)
        holder = f"{info['command']} (pid {info['pid']} on {info['host']}, since {info['since']})"
        return holder, float(info["expires_at"]) < now or _dead_here(info), str(info["expires"])
    except (ValueError, KeyError, TypeError):
        return "process (unreadable lock)", True, "unknown"
