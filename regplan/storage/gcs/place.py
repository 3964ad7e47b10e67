"""Where a GCS-backed registry is: the bucket, the rootdirectory, and how regplan
signs its requests.

Credentials the way Google Cloud's users give them, first found wins:
``--config``'s ``storage.gcs`` (the registry's own ``keyfile``, a service
account's JSON, or ``credentials``, the same inline), then Application Default
Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth
application-default login``, the metadata server of GKE or GCE).
``STORAGE_EMULATOR_HOST``, as for Google's own clients, sends every request to
an emulator, unsigned. A secret is kept aside: never printed, never in a plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from regplan.errors import StorageError
from regplan.storage.objects.bucket import Rooted, checked, clean_root

if TYPE_CHECKING:
    from regplan.storage.gcs.gcsbucket import GcsBucket

SCHEME = "gs://"
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


@attrs.frozen(kw_only=True)
class GcsStorage(Rooted):
    """A bucket and the registry's rootdirectory in it."""

    bucket: str
    rootdirectory: str
    endpoint: str | None = None
    """An emulator's URL (``STORAGE_EMULATOR_HOST``); None: Google's own."""
    keyfile: str | None = attrs.field(default=None, eq=False, repr=False)
    """A service account's JSON key file (the driver's ``keyfile``)."""
    info: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    """A service account's key, inline (the driver's ``credentials``)."""

    def url(self, key: str) -> str:
        return f"{SCHEME}{self.bucket}/{key}"

    def record(self) -> dict[str, str]:
        out = {"driver": "gcs", "bucket": self.bucket, "rootdirectory": self.rootdirectory}
        if self.endpoint:
            out["endpoint"] = self.endpoint
        return out

    def open(self) -> GcsBucket:
        from regplan.storage.gcs.gcsbucket import GcsBucket  # noqa: PLC0415 (SDK optional)

        return GcsBucket(self)


def _emulator(env: Mapping[str, str]) -> str | None:
    host = env.get(EMULATOR_ENV)
    if not host:
        return None
    return host if "://" in host else f"http://{host}"


def parse_url(url: str, env: Mapping[str, str]) -> GcsStorage:
    """``gs://BUCKET/ROOTDIRECTORY``; credentials from Application Default Credentials."""
    bucket, _, root = url[len(SCHEME) :].partition("/")
    if not bucket:
        raise StorageError(f"{url}: no bucket (expected gs://BUCKET/ROOTDIRECTORY)")
    return GcsStorage(bucket=bucket, rootdirectory=clean_root(root), endpoint=_emulator(env))


def from_record(record: Mapping[str, str], env: Mapping[str, str]) -> GcsStorage:
    """The storage a plan names (credentials from the environment)."""
    record = checked(record, "gcs", frozenset({"bucket", "rootdirectory"}), frozenset({"endpoint"}))
    return GcsStorage(
        bucket=record["bucket"],
        rootdirectory=clean_root(record.get("rootdirectory", "")),
        endpoint=record.get("endpoint") or _emulator(env),
    )


def from_config(params: Mapping[str, object], env: Mapping[str, str], where: str) -> GcsStorage:
    """``storage.gcs`` of a registry config, ``REGISTRY_STORAGE_GCS_*`` overriding."""

    def get(name: str) -> str | None:
        value = env.get(f"REGISTRY_STORAGE_GCS_{name.upper()}")
        if value is None:
            raw = params.get(name)
            value = None if raw is None or isinstance(raw, Mapping) else str(raw)
        return value or None

    bucket = get("bucket")
    if bucket is None:
        raise StorageError(f"{where}: storage.gcs.bucket is not set")
    info = params.get("credentials")
    if env.get("REGISTRY_STORAGE_GCS_CREDENTIALS"):
        try:
            info = json.loads(env["REGISTRY_STORAGE_GCS_CREDENTIALS"])
        except ValueError:
            raise StorageError("REGISTRY_STORAGE_GCS_CREDENTIALS is not JSON") from None
    if info is not None and not isinstance(info, Mapping):
        raise StorageError(f"{where}: storage.gcs.credentials is not a mapping")
    return GcsStorage(
        bucket=bucket,
        rootdirectory=clean_root(get("rootdirectory") or ""),
        endpoint=_emulator(env),
        keyfile=get("keyfile"),
        info=info,
    )
