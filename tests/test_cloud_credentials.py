"""A plan of a bucket opened without its credentials: one line naming what to pass, never
the client library's traceback (issue #33, item 13). The plan rightly records no secret,
so every command that opens its storage from the plan alone needs the environment's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from tests.helpers import KEY, selection, sign_raw, write_plan_file, write_pub

AZURITE = {
    "driver": "azure",
    "bucket": "registry",
    "rootdirectory": "reg",
    "account": "devstoreaccount1",
    "endpoint": "http://127.0.0.1:10000/devstoreaccount1",
}
CREDENTIALS = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_KEY",
)


@pytest.mark.parametrize("command", ["verify", "apply"])
def test_an_azure_plan_over_http_without_a_key_is_one_line(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    made = tmp_path / "made.json"
    write_plan_file(demo_root, selection(("team/app:v1",)), made)
    raw = json.loads(made.read_text())
    raw["root"] = "az://registry/reg"
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(sign_raw(raw | {"storage": AZURITE})))
    pub = write_pub(KEY, tmp_path / "k.pub")
    r = CliRunner().invoke(cli, [command, str(plan), "--trust", str(pub)])
    assert r.exit_code == 1, r.output
    [line] = r.output.splitlines()
    assert line.startswith("Error: http://127.0.0.1:10000/devstoreaccount1: no account key")
    assert "--config" in line and "AZURE_STORAGE_CONNECTION_STRING" in line
    assert "Traceback" not in r.output
