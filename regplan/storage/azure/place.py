"""Where an Azure-backed registry is: the storage account, the container, the
rootdirectory, and how regplan signs its requests.

Credentials the way Azure's users give them, first found wins:
``--config``'s ``storage.azure`` (the registry's own: ``accountkey`` with
``credentials.type: shared_key``, ``client_secret`` with ``clientid``,
``tenantid`` and ``secret``, or ``default_credentials``), then
``AZURE_STORAGE_CONNECTION_STRING`` (what the Azure CLI and the emulator use),
then ``AZURE_STORAGE_ACCOUNT`` with ``AZURE_STORAGE_KEY``, then
``DefaultAzureCredential`` (environment, workload identity, managed identity,
Azure CLI login). A secret is kept aside: never printed, never in a plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs

from regplan.errors import StorageError
from regplan.storage.objects.bucket import Rooted, checked, clean_root

if TYPE_CHECKING:
    from regplan.storage.azure.container import AzureBucket

SCHEME = "az://"
REALM = "core.windows.net"


@attrs.frozen(kw_only=True)
class Credential:
    """How requests are signed: ``connection_string``, ``shared_key``,
    ``client_secret`` or ``default`` (DefaultAzureCredential)."""

    kind: str
    secret: str = attrs.field(default="", repr=False)
    """The connection string, the account key or the client secret."""
    client_id: str = ""
    tenant_id: str = ""


@attrs.frozen(kw_only=True)
class AzureStorage(Rooted):
    """A container of a storage account and the registry's rootdirectory in it."""

    account: str
    container: str
    rootdirectory: str
    endpoint: str
    """The account's blob service URL (``https://ACCOUNT.blob.core.windows.net``)."""
    credential: Credential = attrs.field(
        factory=lambda: Credential(kind="default"), eq=False, repr=False
    )

    def url(self, key: str) -> str:
        return f"{SCHEME}{self.container}/{key}"

    def record(self) -> dict[str, str]:
        return {
            "driver": "azure",
            "bucket": self.container,
            "rootdirectory": self.rootdirectory,
            "account": self.account,
            "endpoint": self.endpoint,
        }

    def open(self) -> AzureBucket:
        from regplan.storage.azure.container import AzureBucket  # noqa: PLC0415 (SDK optional)

        return AzureBucket(self)


def connection_string(text: str) -> dict[str, str]:
    """``Key=Value;...`` (a value may hold ``=``, as a base64 key does)."""
    out = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _from_env(account: str | None, env: Mapping[str, str]) -> tuple[str, str | None, Credential]:
    """The account, its endpoint (None: the public cloud's) and the credential the
    environment gives; ``account``, when known, must be the one it names."""
    text = env.get("AZURE_STORAGE_CONNECTION_STRING")
    if text:
        parts = connection_string(text)
        named = parts.get("AccountName", "")
        if named and (account is None or named == account):
            endpoint = parts.get("BlobEndpoint", "")
            if not endpoint:
                protocol = parts.get("DefaultEndpointsProtocol", "https")
                endpoint = f"{protocol}://{named}.blob.{parts.get('EndpointSuffix', REALM)}"
            return named, endpoint, Credential(kind="connection_string", secret=text)
    name = env.get("AZURE_STORAGE_ACCOUNT") or env.get("AZURE_STORAGE_ACCOUNT_NAME") or account
    if not name:
        raise StorageError(
            "Azure storage needs its account: set AZURE_STORAGE_CONNECTION_STRING or "
            "AZURE_STORAGE_ACCOUNT (or give the registry's config with --config)"
        )
    key = env.get("AZURE_STORAGE_KEY")
    if key and (account is None or name == account):
        return name, None, Credential(kind="shared_key", secret=key)
    return account or name, None, Credential(kind="default")


def _container_root(url: str) -> tuple[str, str]:
    container, _, root = url[len(SCHEME) :].partition("/")
    if not container:
        raise StorageError(f"{url}: no container (expected az://CONTAINER/ROOTDIRECTORY)")
    return container, clean_root(root)


def parse_url(url: str, env: Mapping[str, str]) -> AzureStorage:
    """``az://CONTAINER/ROOTDIRECTORY``; the account and credential from the environment."""
    container, root = _container_root(url)
    account, endpoint, credential = _from_env(None, env)
    return AzureStorage(
        account=account,
        container=container,
        rootdirectory=root,
        endpoint=endpoint or f"https://{account}.blob.{REALM}",
        credential=credential,
    )


def from_record(record: Mapping[str, str], env: Mapping[str, str]) -> AzureStorage:
    """The storage a plan names (credentials from the environment)."""
    record = checked(
        record, "azure", frozenset({"bucket", "rootdirectory"}), frozenset({"endpoint", "account"})
    )
    account = record.get("account") or ""
    _, endpoint, credential = _from_env(account or None, env)
    return AzureStorage(
        account=account,
        container=record["bucket"],
        rootdirectory=clean_root(record.get("rootdirectory", "")),
        endpoint=record.get("endpoint") or endpoint or f"https://{account}.blob.{REALM}",
        credential=credential,
    )


def from_config(params: Mapping[str, object], env: Mapping[str, str], where: str) -> AzureStorage:
    """``storage.azure`` of a registry config, ``REGISTRY_STORAGE_AZURE_*`` overriding."""

    def get(*names: str) -> str | None:
        value = env.get("REGISTRY_STORAGE_AZURE_" + "_".join(names).upper())
        if value is None:
            raw: object = params
            for name in names:
                raw = raw.get(name) if isinstance(raw, Mapping) else None
            value = None if raw is None or isinstance(raw, Mapping) else str(raw)
        return value or None

    account, container = get("accountname"), get("container")
    if not account or not container:
        raise StorageError(f"{where}: storage.azure needs accountname and container")
    endpoint = get("serviceurl") or f"https://{account}.blob.{get('realm') or REALM}"
    return AzureStorage(
        account=account,
        container=container,
        rootdirectory=clean_root(get("rootdirectory") or ""),
        endpoint=endpoint.rstrip("/"),
        credential=_config_credential(get, account, env, where),
    )


def _config_credential(
    get: Callable[..., str | None], account: str, env: Mapping[str, str], where: str
) -> Credential:
    kind = (get("credentials", "type") or "").lower()
    key = get("accountkey")
    if kind == "shared_key" or (not kind and key):
        if not key:
            raise StorageError(
                f"{where}: storage.azure credentials.type shared_key needs accountkey"
            )
        return Credential(kind="shared_key", secret=key)
    if kind == "client_secret":
        cid, tid, secret = (get("credentials", n) for n in ("clientid", "tenantid", "secret"))
        if not (cid and tid and secret):
            raise StorageError(
                f"{where}: storage.azure credentials.type client_secret needs clientid, "
                "tenantid and secret"
            )
        return Credential(kind="client_secret", secret=secret, client_id=cid, tenant_id=tid)
    if kind in ("", "default_credentials"):
        return _from_env(account, env)[2]
    raise StorageError(f"{where}: storage.azure credentials.type {kind!r} is not known")
