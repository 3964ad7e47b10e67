"""Where the storage is, from the registry's own configuration file.

Only ``storage.filesystem.rootdirectory`` is read, and overridden by
``REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`` as the registry itself does.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from regplan.errors import StorageError

ENV_ROOT = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"
DEFAULT_ROOT = "/var/lib/registry"
"""distribution's filesystem driver default."""
NOT_DRIVERS = frozenset({"delete", "maintenance", "cache", "redirect", "tag"})
"""Keys under ``storage`` that configure something other than the driver."""


def rootdirectory(config: Path, env: Mapping[str, str]) -> Path:
    """The filesystem driver's rootdirectory; refuse any other driver, naming it."""
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
    storage = doc.get("storage") if isinstance(doc, dict) else None
    if not isinstance(storage, dict):
        raise StorageError(f"{config} has no storage section")
    drivers = sorted(k for k in storage if k not in NOT_DRIVERS)
    if drivers != ["filesystem"]:
        named = ", ".join(drivers) or "none"
        raise StorageError(
            f"{config} uses the {named} storage driver: regplan works on the filesystem driver only"
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
