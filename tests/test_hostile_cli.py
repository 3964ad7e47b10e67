"""Damaged and hostile storage, part 3: every command ends with a result or one line.

Each case is one that used to end in a traceback (or a two-line message); now
it is ``Error: <one line>`` and a documented exit code, and the registry is as
it was.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.demo.samples import build_demo
from tests.helpers import (
    KEY,
    as_nobody,
    docker_hashes,
    remove_tree,
    selection,
    shared_tmp,
    tmpfs,
    write_plan_file,
    write_pub,
)

EC_SECP112R1 = """-----BEGIN EC PRIVATE KEY-----
MD4CAQEEDsrw455yoWGCWdny3UPkoAcGBSuBBAAGoSADHgAE0AAutPD0i7B6Aqrb
kUIgBoy2O279347MqbW6eQ==
-----END EC PRIVATE KEY-----
"""
"""An EC key on a curve OpenSSL does not support (made once with openssl ecparam)."""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert result.output.startswith("Error: "), result.output
    assert result.output.count("\n") == 1, result.output
    return result.output


@pytest.fixture
def root(demo_root: Path) -> Path:
    return demo_root


@pytest.fixture
def key(tmp_path: Path) -> Path:
    k = tmp_path / "planner.key"
    assert run("keygen", str(k)).exit_code == 0
    return k


@pytest.fixture
def plan(root: Path, tmp_path: Path) -> Path:
    p = tmp_path / "p.json"
    write_plan_file(root, selection(images=("old/repo:2019",), prune=True), p)
    return p


@pytest.fixture
def pub(tmp_path: Path) -> Path:
    return write_pub(KEY, tmp_path / "trusted.pub")


@pytest.mark.parametrize("command", ["show", "verify", "apply"])
def test_a_plan_file_nested_100000_deep(tmp_path: Path, pub: Path, command: str) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    extra = [] if command == "show" else ["--trust", str(pub)]
    assert "not a regplan plan" in one_line_error(run(command, str(deep), *extra))
    deep.write_text('{"format": "regplan.plan", "x": ' + "[" * 100_000)
    assert "nested too deeply" in one_line_error(run(command, str(deep), *extra))


@pytest.mark.parametrize(
    "flag", ["--older-than", "--gc-min-age", "--uploads-older-than", "purge --older-than"]
)
def test_huge_ages_are_usage_errors(root: Path, key: Path, flag: str) -> None:
    if flag.startswith("purge"):
        args = ["purge", "--older-than", "99999999999w", "--root", str(root)]
    else:
        args = ["plan", "--root", str(root), "--key", str(key), "--image", "old/repo"]
        args += ["--gc"] if flag == "--gc-min-age" else []
        args += [flag, "99999999999w"]
    result = run(*args)
    assert result.exit_code == 64, result.output
    assert "more than 1000 years" in result.output


def test_plan_output_that_is_a_directory_or_under_a_file(
    root: Path, key: Path, tmp_path: Path
) -> None:
    common = ["plan", "--root", str(root), "--key", str(key), "--image", "old/repo"]
    assert "is a directory" in one_line_error(run(*common, "-o", str(tmp_path)))
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "cannot write plan" in one_line_error(run(*common, "-o", str(afile / "x.json")))


def test_keygen_under_a_file_and_beside_a_dangling_pub_link(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "cannot write key" in one_line_error(run("keygen", str(afile / "sub" / "key")))
    target = tmp_path / "written-through-the-link"
    (tmp_path / "k.pub").symlink_to(target)
    assert "exists; refusing to overwrite" in one_line_error(run("keygen", str(tmp_path / "k")))
    assert not (tmp_path / "k").exists()
    assert not target.exists()


def test_demo_twice(tmp_path: Path) -> None:
    assert run("demo", str(tmp_path)).exit_code == 0
    assert "exists; give an empty or new directory" in one_line_error(run("demo", str(tmp_path)))


def test_config_that_is_a_binary_file(tmp_path: Path, key: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_bytes(bytes(range(256)))
    result = run("plan", "--config", str(config), "--key", str(key), "--gc")
    assert "not a text file" in one_line_error(result)


def test_a_key_on_an_unsupported_curve(root: Path, tmp_path: Path) -> None:
    ec = tmp_path / "ec.key"
    ec.write_text(EC_SECP112R1)
    result = run("plan", "--root", str(root), "--key", str(ec), "--gc")
    assert "not an unencrypted PEM private key" in one_line_error(result)


def test_a_name_with_a_newline_stays_on_one_line(root: Path, key: Path) -> None:
    result = run("plan", "--root", str(root), "--key", str(key), "--image", "no\nsuch")
    assert "no\\x0asuch" in one_line_error(result)


@pytest.fixture
def shared() -> Iterator[Path]:
    base = shared_tmp()
    yield base
    remove_tree(base)


def test_a_rootdirectory_nobody_may_write(shared: Path) -> None:
    """The service account cannot create regplan-state/: one line, nothing moved."""
    root = shared / "registry"
    build_demo(root)
    plan = shared / "p.json"
    write_plan_file(root, selection(images=("old/repo:2019",)), plan)
    pub = write_pub(KEY, shared / "trusted.pub")
    before = docker_hashes(root)

    def apply_as_nobody() -> tuple[int, str]:
        result = run("apply", str(plan), "--trust", str(pub))
        return result.exit_code, result.output

    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")
    code, output = as_nobody(apply_as_nobody)
    assert code == 1 and output.count("\n") == 1, output
    assert "cannot take the lock" in output and "Permission denied" in output
    assert docker_hashes(root) == before


def test_history_with_an_unreadable_applies_folder(shared: Path, pub: Path) -> None:
    root = shared / "registry"
    build_demo(root)
    plan = shared / "p.json"
    write_plan_file(root, selection(images=("old/repo:2019",)), plan)
    assert run("apply", str(plan), "--trust", str(pub)).exit_code == 0
    (root / "regplan-state/applies").chmod(0o700)
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")

    def history_as_nobody() -> tuple[int, str]:
        result = run("history", "--root", str(root))
        return result.exit_code, result.output

    code, output = as_nobody(history_as_nobody)
    assert code == 1 and output.startswith("Error: cannot read ") and output.count("\n") == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs: a disk that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    with tmpfs(mount, "8m"):
        yield mount


def fill(disk: Path) -> None:
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)


def test_a_full_disk_at_plan_and_at_apply(small_disk: Path, key: Path, pub: Path) -> None:
    root = small_disk / "registry"
    build_demo(root)
    plan = small_disk / "p.json"
    write_plan_file(root, selection(images=("old/repo:2019",), prune=True), plan)
    before = docker_hashes(root)
    fill(small_disk)
    out = small_disk / "out.json"
    made = run("plan", "--root", str(root), "--key", str(key), "--gc", "-o", str(out))
    assert "No space left on device" in one_line_error(made)
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "p.json", "registry"]
    result = run("apply", str(plan), "--trust", str(pub))
    assert "No space left on device" in one_line_error(result)
    assert docker_hashes(root) == before
    (small_disk / "filler").unlink()
    assert run("apply", str(plan), "--trust", str(pub)).exit_code == 0


def test_a_read_only_filesystem(root: Path, plan: Path, pub: Path) -> None:
    done = subprocess.run(
        ["mount", "--bind", "-o", "ro", str(root), str(root)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount read-only here: {done.stderr.decode().strip()}")
    try:
        result = run("apply", str(plan), "--trust", str(pub))
        assert "Read-only file system" in one_line_error(result)
    finally:
        subprocess.run(["umount", str(root)], check=True)


def test_a_full_temporary_folder_at_verify_is_one_line(
    small_disk: Path, plan: Path, pub: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify and apply copy the plan aside first: no room for it is one line, exit 1,
    and nothing moved. (One page is left free: Python's probe of the folder passes.)"""
    fill(small_disk)
    filler = small_disk / "filler"
    os.truncate(filler, filler.stat().st_size - 4096)
    assert plan.stat().st_size > 4096
    monkeypatch.setenv("TMPDIR", str(small_disk))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() asks TMPDIR again
    before = docker_hashes(root)
    for command in ("verify", "apply"):
        error = one_line_error(run(command, str(plan), "--trust", str(pub), "--root", str(root)))
        assert "cannot copy plan" in error and "aside: No space left on device" in error
    assert docker_hashes(root) == before
