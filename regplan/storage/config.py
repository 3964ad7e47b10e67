"""Where the storage is, and how the registry runs over it, from its own configuration file.

``storage.filesystem.rootdirectory`` (overridden by
``REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`` as the registry itself does) or
``storage.s3`` (``REGISTRY_STORAGE_S3_*``),
``storage.maintenance.readonly.enabled``, ``storage.cache.blobdescriptor`` and
``redis.addr`` (2.8) or ``redis.addrs`` and ``redis.mastername`` (v3: a list of nodes,
a cluster or a sentinel), with their ``REGISTRY_*`` overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs
import yaml

from regplan.errors import StorageError
from regplan.storage.clouds import CLOUDS, Found

ENV_ROOT = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"
DEFAULT_ROOT = "/var/lib/registry"
"""distribution's filesystem driver default."""
NOT_DRIVERS = frozenset({"delete", "maintenance", "cache", "redirect", "tag"})
"""Keys under ``storage`` that configure something other than the driver."""


def _load(config: Path) -> dict[str, object]:
    """The config's top-level mapping; one-line StorageError otherwise."""
    try:
        doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    except OSError as e:
        raise StorageError(f"cannot read registry config {config}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise StorageError(f"{config} is not a text file (not UTF-8)") from None
    except RecursionError:
        raise StorageError(f"{config} is not valid YAML (nested too deeply)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise StorageError(f"{config} is not valid YAML{where}") from None
    return doc if isinstance(doc, dict) else {}  # then: "has no storage section"


def rootdirectory(config: Path, env: Mapping[str, str]) -> Found:
    """The filesystem driver's rootdirectory, or an object store's container and
    rootdirectory (``storage.s3``, ``storage.azure``, ``storage.gcs``, with
    ``REGISTRY_STORAGE_<DRIVER>_*`` overriding); refuse any other driver, naming it."""
    doc = _load(config)
    storage = doc.get("storage")
    if not isinstance(storage, dict):
        raise StorageError(f"{config} has no storage section")
    drivers = sorted(k for k in storage if k not in NOT_DRIVERS)
    if len(drivers) == 1 and drivers[0] in CLOUDS:
        params = storage[drivers[0]] or {}
        if not isinstance(params, dict):
            raise StorageError(f"{config}: storage.{drivers[0]} is not a mapping")
        return CLOUDS[drivers[0]].from_config(params, env, str(config))
    if drivers != ["filesystem"]:
        named = ", ".join(drivers) or "none"
        raise StorageError(
            f"{config} uses the {named} storage driver: regplan works on the filesystem, "
            "s3, azure and gcs drivers only"
        )
    if env.get(ENV_ROOT):
        return Path(env[ENV_ROOT])
    params = storage["filesystem"] or {}
    if not isinstance(params, dict):
        raise StorageError(f"{config}: storage.filesystem is not a mapping")
    root = params.get("rootdirectory", DEFAULT_ROOT)
    if not isinstance(root, str) or not root:
        raise StorageError(f"{config}: storage.filesystem.rootdirectory is not a path")
    return Path(root)


@attrs.frozen(kw_only=True)
class Running:
    """How the registry serves the storage, as far as its configuration says."""

    readonly: bool
    cache: str | None
    """``storage.cache.blobdescriptor``: ``inmemory``, ``redis`` or None."""
    redis_addrs: tuple[str, ...] = ()
    """``redis.addr`` (2.8), or ``redis.addrs`` (v3: one node, a cluster's seeds or the
    sentinels)."""
    redis_master: str | None = None
    """v3's ``redis.mastername``: the addresses are sentinels that name the master."""
    sparse_indexes: bool = False
    """v3's ``validation.manifests.indexes.platforms`` is ``none`` or ``list``: it accepts
    indexes whose children are absent."""
    url: str | None = None
    """Where it listens, from ``http.addr``, ``http.tls`` and ``http.prefix`` (None on
    a unix socket): what apply and rollback probe."""


def _section(doc: Mapping[str, object], *keys: str) -> Mapping[str, object]:
    """``doc[k1][k2]...`` as a mapping; empty when any level is missing or not a mapping."""
    for key in keys:
        value = doc.get(key)
        doc = value if isinstance(value, dict) else {}
    return doc


def running(config: Path, env: Mapping[str, str]) -> Running:
    doc = _load(config)
    flag = env.get("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED")
    enabled = _section(doc, "storage", "maintenance", "readonly").get("enabled")
    kind = _section(doc, "storage", "cache").get("blobdescriptor")
    master = env.get("REGISTRY_REDIS_MASTERNAME") or _section(doc, "redis").get("mastername")
    return Running(
        url=listening(doc, env),
        readonly=(flag.lower() == "true") if flag else enabled is True,
        cache=env.get("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR")
        or (kind if isinstance(kind, str) else None),
        redis_addrs=_redis_addrs(_section(doc, "redis"), env),
        redis_master=str(master) if master else None,
        sparse_indexes=_platforms(doc, env) in ("none", "list"),
    )


def _platforms(doc: Mapping[str, object], env: Mapping[str, str]) -> str:
    found = env.get("REGISTRY_VALIDATION_MANIFESTS_INDEXES_PLATFORMS") or _section(
        doc, "validation", "manifests", "indexes"
    ).get("platforms")
    return str(found).lower() if found else "all"


def _redis_addrs(redis: Mapping[str, object], env: Mapping[str, str]) -> tuple[str, ...]:
    """v3's ``redis.addrs`` (``REGISTRY_REDIS_ADDRS``: ``[a, b]`` or ``a,b``), else 2.8's
    ``redis.addr`` (``REGISTRY_REDIS_ADDR``)."""
    listed = env.get("REGISTRY_REDIS_ADDRS")
    if listed:
        return tuple(a.strip(" '\"") for a in listed.strip("[] ").split(",") if a.strip(" '\""))
    addrs = redis.get("addrs")
    if isinstance(addrs, list) and addrs:
        return tuple(str(a) for a in addrs)
    if isinstance(addrs, str) and addrs:
        return (addrs,)
    addr = env.get("REGISTRY_REDIS_ADDR") or redis.get("addr")
    return (str(addr),) if addr else ()


def listening(doc: Mapping[str, object], env: Mapping[str, str]) -> str | None:
    """The URL the registry answers on, as its own configuration says: ``http.addr``
    (``REGISTRY_HTTP_ADDR``; a wildcard host is asked on loopback), https when
    ``http.tls`` names a certificate or letsencrypt, and ``http.prefix``."""
    http = _section(doc, "http")
    net = env.get("REGISTRY_HTTP_NET") or http.get("net")
    if net not in (None, "", "tcp"):
        return None  # a unix socket: nothing to ask over HTTP
    addr = env.get("REGISTRY_HTTP_ADDR") or http.get("addr") or ":5000"
    host, sep, port = str(addr).rpartition(":")
    if not sep or not port.isdigit():
        return None
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host, host)  # noqa: S104
    tls = _section(doc, "http", "tls")
    secure = bool(
        env.get("REGISTRY_HTTP_TLS_CERTIFICATE") or tls.get("certificate") or tls.get("letsencrypt")
    )
    prefix = str(env.get("REGISTRY_HTTP_PREFIX") or http.get("prefix") or "").strip("/")
    return f"{'https' if secure else 'http'}://{host}:{port}" + (f"/{prefix}" if prefix else "")
