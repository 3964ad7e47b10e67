"""Storage must not change under a registry that accepts writes: the guard apply,
rollback and purge run first, and what to tell the operator about the registry's
caches afterwards."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING

from regplan.errors import RegistryOnlineError, RegistryUnknownError
from regplan.storage.config import Running

if TYPE_CHECKING:  # httpx, under regclient, is 17 MiB: imported when a registry is asked
    from regplan.registry.regclient import Probe, RegistryClient


STOPPED = "the operator said the registry is stopped (--registry-stopped)"
"""What the journal records when the operator's word is all regplan has."""


def write_guard(
    *,
    url: str | None,
    settings: Running | None,
    stopped: bool,
    allow_online: bool,
    command: str,
    probe: Callable[[str], str],
) -> tuple[str | None, str]:
    """Before apply or rollback moves anything: how regplan knows the registry cannot
    write, as (the URL probed, what to record in the journal). A URL, given or read from
    the registry's config (``settings``), is always probed (``probe`` refuses a writable
    one); ``stopped`` is the operator's word; with neither, nothing moves (exit 6)."""
    url = url or (settings.url if settings is not None else None)
    if url is not None:
        return url, probe(url)
    if stopped:
        return None, STOPPED
    if allow_online:
        return None, "not checked: --allow-online"
    raise RegistryUnknownError(
        f"{command} moves nothing until it knows the registry cannot write: pass "
        "--registry-url URL (it is probed), --config CONFIG.yml (the registry's own; its "
        "http.addr is probed) or, once the registry is stopped, --registry-stopped "
        "(REGPLAN_REGISTRY_STOPPED=1)"
    )


def guard(client: RegistryClient, *, allow_online: bool, command: str) -> Probe:
    """Probe the registry; refuse (exit 6) when it accepts writes, unless allowed.

    Stopped or read-only: proceed. A registry whose answer says neither (a 401
    without credentials that may push, a proxy) is treated as writable: regplan
    cannot show it is safe.
    """
    from regplan.registry.regclient import Mode  # noqa: PLC0415 (httpx: see above)

    probe = client.probe()
    if probe.mode in (Mode.STOPPED, Mode.READ_ONLY) or allow_online:
        return probe
    state = {
        Mode.WRITABLE: "accepts writes",
        Mode.PULL_THROUGH: "is a pull-through cache, which writes on every uncached pull",
    }.get(probe.mode, "may accept writes")
    raise RegistryOnlineError(
        f"the registry at {client.url} {state} ({probe.detail}): a push in flight "
        f"has blobs nothing references yet; set storage.maintenance.readonly.enabled: true "
        f"(or stop it), restart it, then run {command} again (or pass --allow-online)"
    )


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
