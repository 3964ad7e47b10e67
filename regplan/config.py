"""Where the storage is, and how the registry runs over it, from its own configuration file.

``storage.filesystem.rootdirectory`` (overridden by
``REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`` as the registry itself does) or
``storage.s3`` (``REGISTRY_STORAGE_S3_*``),
``storage.maintenance.readonly.enabled``, ``storage.cache.blobdescriptor`` and
``redis.addr``, with their ``REGISTRY_*`` overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs
import yaml

from regplan import s3
from regplan.errors import StorageError
from regplan.s3 import S3Storage

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


def rootdirectory(config: Path, env: Mapping[str, str]) -> Path | S3Storage:
    """The filesystem driver's rootdirectory, or the s3 driver's bucket and
    rootdirectory (``storage.s3``, ``REGISTRY_STORAGE_S3_*`` overriding); refuse any
    other driver, naming it."""
    doc = _load(config)
    storage = doc.get("storage")
    if not isinstance(storage, dict):
        raise StorageError(f"{config} has no storage section")
    drivers = sorted(k for k in storage if k not in NOT_DRIVERS)
    if drivers == ["s3"]:
        params = storage["s3"] or {}
        if not isinstance(params, dict):
            raise StorageError(f"{config}: storage.s3 is not a mapping")
        return s3.from_config(params, env, str(config))
    if drivers != ["filesystem"]:
        named = ", ".join(drivers) or "none"
        raise StorageError(
            f"{config} uses the {named} storage driver: regplan works on the filesystem "
            "and s3 drivers only"
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
    redis_addr: str | None


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
    addr = _section(doc, "redis").get("addr")
    return Running(
        readonly=(flag.lower() == "true") if flag else enabled is True,
        cache=env.get("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR")
        or (kind if isinstance(kind, str) else None),
        redis_addr=env.get("REGISTRY_REDIS_ADDR") or (str(addr) if addr else None),
    )
