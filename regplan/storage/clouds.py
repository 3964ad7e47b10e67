"""The object stores regplan knows, by the registry's driver name, and ``--root``'s URLs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeAlias

from regplan.storage.azure import place as azure
from regplan.storage.gcs import place as gcs
from regplan.storage.objects.bucket import Cloud, ObjectStorage
from regplan.storage.s3 import bucket

Found: TypeAlias = Path | ObjectStorage
"""Where the command line or a config said the storage is (a path not yet checked)."""

CLOUDS: Mapping[str, Cloud] = {"s3": bucket, "azure": azure, "gcs": gcs}
"""Each object store's package, by the registry's storage driver name."""


def cloud_of(url: str) -> Cloud | None:
    """The object store a ``scheme://`` URL names, or None (a filesystem path)."""
    return next((c for c in CLOUDS.values() if url.startswith(c.SCHEME)), None)


def parse_root(text: str, env: Mapping[str, str]) -> Found:
    """``--root``: an object store's URL, or a filesystem path."""
    cloud = cloud_of(text)
    return Path(text) if cloud is None else cloud.parse_url(text, env)
