"""Azure Blob and GCS places: ``--root az://`` and ``gs://``, the registry's own
``storage.azure`` / ``storage.gcs`` (with ``REGISTRY_STORAGE_*`` overriding), the
credentials each cloud's users expect, what a plan records (never a secret), and the
one-line errors of a bad URL, config or unreachable store."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.errors import StorageError
from regplan.storage.azure import place as azure
from regplan.storage.azure.place import AzureStorage
from regplan.storage.clouds import parse_root
from regplan.storage.config import rootdirectory
from regplan.storage.gcs import place as gcs
from regplan.storage.gcs.place import GcsStorage
from tests.azserver import ACCOUNT, KEY
from tests.helpers import write_keys

EMULATOR = (
    f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
    "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


def config(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yml"
    p.write_text("version: 0.1\nstorage:\n" + text)
    return p


def test_az_url_with_a_connection_string_or_account_and_key() -> None:
    s = parse_root("az://registry/some/root/", {"AZURE_STORAGE_CONNECTION_STRING": EMULATOR})
    assert isinstance(s, AzureStorage)
    assert (s.account, s.container, s.rootdirectory) == (ACCOUNT, "registry", "some/root")
    assert s.endpoint == "http://127.0.0.1:1/devstoreaccount1"
    assert s.credential.kind == "connection_string"
    assert s.root == "az://registry/some/root"
    assert s.v2_prefix == "some/root/docker/registry/v2/"
    keyed = azure.parse_url("az://c", {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": "k"})
    assert keyed.endpoint == "https://acct.blob.core.windows.net"
    assert keyed.credential.kind == "shared_key"
    assert azure.parse_url("az://c", {"AZURE_STORAGE_ACCOUNT": "acct"}).credential.kind == (
        "default"  # DefaultAzureCredential: environment, workload or managed identity, CLI
    )


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        ("az://", {"AZURE_STORAGE_ACCOUNT": "a"}, "no container"),
        ("az://c/a/../b", {"AZURE_STORAGE_ACCOUNT": "a"}, "'..' component"),
        ("az://c", {}, "needs its account"),
        ("gs://", {}, "no bucket"),
        ("gs://b/a/./c", {}, "empty, '.' or '..' component"),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        parse_root(url, env)


def test_azure_config_as_the_registry_reads_it(tmp_path: Path) -> None:
    """storage.azure with shared_key; REGISTRY_STORAGE_AZURE_* override; the key is kept
    aside: never in repr, never in the plan's record."""
    cfg = config(
        tmp_path,
        f"  azure: {{accountname: acct, accountkey: '{KEY}', container: reg,\n"
        "    rootdirectory: /r/x, realm: core.chinacloudapi.cn,\n"
        "    credentials: {type: shared_key}}\n  redirect: {disable: true}\n",
    )
    found = rootdirectory(cfg, {})
    assert isinstance(found, AzureStorage)
    assert found.record() == {
        "driver": "azure",
        "bucket": "reg",
        "rootdirectory": "r/x",
        "account": "acct",
        "endpoint": "https://acct.blob.core.chinacloudapi.cn",
    }
    assert found.credential.kind == "shared_key" and found.credential.secret == KEY
    assert KEY not in repr(found)
    over = rootdirectory(
        cfg, {"REGISTRY_STORAGE_AZURE_CONTAINER": "other", "REGISTRY_STORAGE_AZURE_SERVICEURL":
              "http://127.0.0.1:1/acct/"},
    )  # fmt: skip
    assert isinstance(over, AzureStorage)
    assert (over.container, over.endpoint) == ("other", "http://127.0.0.1:1/acct")


def test_azure_config_credentials(tmp_path: Path) -> None:
    secret = config(
        tmp_path,
        "  azure: {accountname: a, container: c, credentials:\n"
        "    {type: client_secret, clientid: id, tenantid: t, secret: s3cr3t}}\n",
    )
    found = rootdirectory(secret, {})
    assert isinstance(found, AzureStorage)
    assert (found.credential.kind, found.credential.client_id) == ("client_secret", "id")
    assert "s3cr3t" not in repr(found)
    default = config(tmp_path, "  azure: {accountname: a, container: c, credentials:\n"
                               "    {type: default_credentials}}\n")  # fmt: skip
    found = rootdirectory(default, {})
    assert isinstance(found, AzureStorage) and found.credential.kind == "default"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("  azure: {container: c}\n", "storage.azure needs accountname and container"),
        ("  azure: {accountname: a, container: c, credentials: {type: shared_key}}\n",
         "shared_key needs accountkey"),
        ("  azure: {accountname: a, container: c, credentials: {type: client_secret}}\n",
         "client_secret needs clientid, tenantid and secret"),
        ("  azure: {accountname: a, container: c, credentials: {type: magic}}\n",
         "credentials.type 'magic' is not known"),
        ("  azure: [a]\n", "storage.azure is not a mapping"),
        ("  gcs: {keyfile: /k.json}\n", "storage.gcs.bucket is not set"),
        ("  gcs: {bucket: b, credentials: [x]}\n", "storage.gcs.credentials is not a mapping"),
    ],
)  # fmt: skip
def test_bad_cloud_configs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        rootdirectory(config(tmp_path, text), {})


def test_gcs_url_config_and_record(tmp_path: Path) -> None:
    s = gcs.parse_url("gs://bucket/reg", {"STORAGE_EMULATOR_HOST": "127.0.0.1:9"})
    assert (s.bucket, s.rootdirectory, s.endpoint) == ("bucket", "reg", "http://127.0.0.1:9")
    assert gcs.parse_url("gs://bucket", {}).endpoint is None  # Google's own, ADC
    cfg = config(
        tmp_path,
        "  gcs: {bucket: b, rootdirectory: /x, keyfile: /etc/sa.json,\n"
        "    credentials: {type: service_account, private_key: PRIVATE}}\n",
    )
    found = rootdirectory(cfg, {"REGISTRY_STORAGE_GCS_BUCKET": "other"})
    assert isinstance(found, GcsStorage)
    assert found.record() == {"driver": "gcs", "bucket": "other", "rootdirectory": "x"}
    assert found.keyfile == "/etc/sa.json"
    assert found.info is not None and "PRIVATE" not in repr(found)
    assert gcs.from_record(found.record(), {}) == found


def test_azure_record_reopens_with_the_environment_credential() -> None:
    s = azure.parse_url("az://c/r", {"AZURE_STORAGE_CONNECTION_STRING": EMULATOR})
    again = azure.from_record(s.record(), {"AZURE_STORAGE_CONNECTION_STRING": EMULATOR})
    assert again == s and again.credential.kind == "connection_string"
    elsewhere = azure.from_record(s.record(), {"AZURE_STORAGE_ACCOUNT": "other"})
    assert elsewhere.account == ACCOUNT and elsewhere.credential.kind == "default"


def test_an_unreachable_store_is_a_one_line_error(tmp_path: Path) -> None:
    """Nothing listens: plan fails in one line naming the container, exit 1."""
    pytest.importorskip("azure.storage.blob")
    key, _ = write_keys(tmp_path)
    r = CliRunner().invoke(
        cli,
        ["plan", "--root", "az://nothing/r", "--key", str(key), "--gc"],
        env={"AZURE_STORAGE_CONNECTION_STRING": EMULATOR.replace(":1/", ":9/")},
    )
    assert r.exit_code == 1, r.output
    assert r.output.count("\n") == 1 and "az://nothing" in r.output, r.output
    assert KEY not in r.output


def test_gcs_without_credentials_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key file, no Application Default Credentials: one line naming the bucket."""
    pytest.importorskip("google.cloud.storage")
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server either
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    cfg = config(tmp_path, "  gcs: {bucket: b}\n")
    r = CliRunner().invoke(cli, ["history", "--config", str(cfg)])
    assert r.exit_code == 1, r.output
    assert r.output.startswith("Error: gs://b: no usable GCS credentials")
    assert r.output.count("\n") == 1
