"""What an operator notices (#33.12): the help names every storage, ``-q`` leaves only
what failed, ``demo`` leaves nothing behind in the temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from tests.helpers import KEY, selection, write_plan_file, write_pub
from tests.test_check import ServesEverything


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_help_names_every_kind_of_storage() -> None:
    out = run("--help").output
    assert "filesystem storage" not in out
    assert all(kind in out for kind in ("filesystem", "S3", "Azure", "Google Cloud Storage"))


def test_quiet_verify_prints_nothing_when_it_passes(demo_root: Path, tmp_path: Path) -> None:
    plan = tmp_path / "p.json"
    write_plan_file(demo_root, selection(("old/repo:2019",)), plan)
    pub = write_pub(KEY, tmp_path / "k.pub")
    loud = run("verify", str(plan), "--trust", str(pub), "--root", str(demo_root))
    assert loud.exit_code == 0 and loud.stdout.startswith("OK: plan ")
    quiet = run("verify", str(plan), "--trust", str(pub), "--root", str(demo_root), "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


@pytest.fixture
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ServesEverything)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_quiet_check_prints_nothing_when_all_is_whole(demo_root: Path, registry: str) -> None:
    args = ("check", "--registry-url", registry, "--root", str(demo_root))
    loud = run(*args)
    assert loud.exit_code == 0 and "Checked " in loud.stdout
    quiet = run(*args, "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


def test_demo_leaves_nothing_in_the_temporary_folder(tmp_path: Path) -> None:
    """Without a DIRECTORY the tour runs in a temporary folder and deletes it (and says
    so); with one, everything stays there."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "regplan", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    assert "regplan demo DIRECTORY" in done.stdout.splitlines()[-1]
