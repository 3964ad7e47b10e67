"""Storage must not change under a registry that accepts writes: the guard apply,
rollback and purge run first (its probes and proof strung together; the decision is
``guard``'s, the requests ``regclient``'s), and what to tell the operator about the
registry's caches afterwards."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from regplan.registry import guard
from regplan.registry.guard import Answers, Ask, Catalog, Holding, Probe, Served, Target
from regplan.storage.config import Running

log = logging.getLogger(__name__)

STOPPED = guard.STOPPED


class Asker(Protocol):
    """What the guard asks one URL (``regclient.RegistryClient`` is one)."""

    def probe(self) -> Probe: ...

    def served(self, ask: Ask) -> Served: ...

    def catalog(self) -> Catalog: ...


def write_guard(
    *,
    urls: Sequence[str],
    settings: Running | None,
    stopped: bool,
    allow_online: bool,
    command: str,
    open_url: Callable[[str], AbstractContextManager[Asker]],
    holding: Callable[[], Holding],
) -> str:
    """Before apply, rollback or purge changes anything: how regplan knows the registry
    cannot write, as what to record in the journal.

    Each URL given (replicas behind a balancer: each), else the one the registry's config
    (``settings``) names, is probed (``open_url``) and judged (``guard.after_probe``); a
    read-only one is trusted once it is shown to serve this storage: ``holding`` (what the
    storage holds, read once, only then) against its answers (``guard.after_proof``).
    ``stopped`` is the operator's word; with no URL and no word, nothing moves (exit 6)."""
    targets = [Target(url=u) for u in urls]
    if not targets and settings is not None and settings.url is not None:
        targets = [Target(url=settings.url, from_config=True)]
    if not targets:
        return guard.no_url(stopped=stopped, allow_online=allow_online, command=command)
    held: list[Holding] = []
    said = []
    for target in targets:
        with open_url(target.url) as asker:
            probe = asker.probe()
            log.info("registry %s: %s (%s)", target.url, probe.mode.value, probe.detail)
            record = guard.after_probe(
                target, probe, stopped=stopped, allow_online=allow_online, command=command
            )
            if record is None:
                held = held or [holding()]
                answers = ask(asker, held[0])
                record = guard.after_proof(target, probe, held[0], answers, command=command)
        said.append(record)
    return guard.join(said)


def ask(asker: Asker, holding: Holding) -> Answers:
    """The URL's answers for what the storage holds: its manifests, else its catalog."""
    if holding.asks:
        return tuple(asker.served(a) for a in holding.asks)
    return asker.catalog()


def mode_advice(settings: Running | None, *, probed: bool) -> str | None:
    """What the registry's configuration says about writes, when no probe could."""
    if settings is None:
        return None
    if settings.readonly:
        return (
            "The registry's configuration has storage.maintenance.readonly on: turn it off "
            "(and restart) once `regplan check` is clean."
        )
    if not probed:
        return (
            "Warning: the registry's configuration does not set "
            "storage.maintenance.readonly: make sure it was stopped (--registry-url checks)."
        )
    return None


def cache_advice(settings: Running | None) -> str:
    """What the operator must do so the registry stops serving what moved: its blob
    descriptor cache, which v3 also answers manifest lookups from (distribution#4595)."""
    if settings is None or settings.cache != "redis":
        return "Restart the registry now: it caches blob descriptors in memory (v3: manifests too)."
    addrs = settings.redis_addrs or ("localhost:6379",)
    host, _, port = addrs[0].rpartition(":")
    where = ["-h", host or "localhost", "-p", port or "6379"]
    flush = "Flush the registry's redis blob descriptor cache (a restart does not)"
    if settings.redis_master is not None:  # sentinels: flush the master they name
        ask = shlex.join(["redis-cli", *where, "SENTINEL", "get-master-addr-by-name"])
        where_to = f" on the master that {ask} {shlex.quote(settings.redis_master)} names"
        return f"{flush}{where_to}: " + _flush("redis-cli -h MASTER -p PORT")
    if len(addrs) > 1:  # a cluster: each master holds some of the keys
        nodes = shlex.join(["redis-cli", *where, "CLUSTER", "NODES"])
        where_to = f" on each master that {nodes} lists"
        return f"{flush}{where_to}: " + _flush("redis-cli -c -h MASTER -p PORT")
    return f"{flush}: " + _flush(shlex.join(["redis-cli", *where]))


def _flush(cli: str) -> str:
    return (
        f"{cli} --scan --pattern 'blobs::*' | xargs -r {cli} DEL; "
        f"{cli} --scan --pattern 'repository::*::blobs*' | xargs -r {cli} DEL"
    )
