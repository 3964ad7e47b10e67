"""The real distribution registry (Debian docker-registry) and skopeo, driven from tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from regplan.demo import DemoImages, Index, Pushable, write_oci_layout
from regplan.layout import Storage
from regplan.scan import scan

REGISTRY = "docker-registry"
SKOPEO = "skopeo"


def require_binaries() -> None:
    """Skip when the binaries are missing, unless CI demands the real registry."""
    missing = [b for b in (REGISTRY, SKOPEO) if shutil.which(b) is None]
    if not missing:
        return
    message = (
        f"real registry tests need {', '.join(missing)} (apt-get install docker-registry skopeo)"
    )
    if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
        pytest.fail(message + "; REGPLAN_REQUIRE_REAL_REGISTRY=1 makes this a failure")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RealRegistry:
    """One ``docker-registry serve`` on 127.0.0.1 over a filesystem root."""

    def __init__(self, root: Path, work: Path) -> None:
        self.root = root
        self.work = work
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.config = work / f"registry-{self.port}.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            "storage:\n"
            f"  filesystem: {{rootdirectory: {root}}}\n"
            "  delete: {enabled: true}\n"
            f"http: {{addr: {self.host}}}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._n = 0

    def start(self) -> None:
        log = (self.work / f"registry-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [REGISTRY, "serve", str(self.config)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"registry did not start; log in {log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """The registry caches blob descriptors: restart after changing the tree."""
        self.stop()
        self.start()

    def _skopeo(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SKOPEO, "--insecure-policy", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def push(self, repo: str, tag: str | None, item: Pushable) -> None:
        self._n += 1
        layout = self.work / f"push-{self._n}"
        write_oci_layout(layout, {"x": item})
        ref = f"{repo}:{tag}" if tag else f"{repo}@{item.digest}"
        extra = ["--all"] if isinstance(item, Index) else []
        r = self._skopeo(
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--preserve-digests",
            *extra,
            f"oci:{layout}:x",
            f"docker://{self.host}/{ref}",
        )
        assert r.returncode == 0, r.stderr
        shutil.rmtree(layout)

    def pull(self, ref: str) -> bool:
        """True when every manifest and blob of ``ref`` (repo:tag or repo@digest) arrives intact."""
        self._n += 1
        out = self.work / f"pull-{self._n}"
        r = self._skopeo(
            "copy",
            "-q",
            "--all",
            "--src-tls-verify=false",
            f"docker://{self.host}/{ref}",
            f"oci:{out}:x",
        )
        shutil.rmtree(out, ignore_errors=True)
        return r.returncode == 0

    def delete_manifest(self, repo: str, digest: object) -> None:
        """DELETE /v2/<repo>/manifests/<digest> (storage.delete.enabled is on)."""
        req = urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{digest}", method="DELETE"
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202

    def garbage_collect(self, *flags: str) -> str:
        r = subprocess.run(
            [REGISTRY, "garbage-collect", *flags, str(self.config)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout + r.stderr


Serve = Callable[[Path], RealRegistry]


def copy_of(pushed: tuple[Path, DemoImages], tmp_path: Path) -> Path:
    """A private copy of the pushed tree (each test changes its own)."""
    root = tmp_path / "root"
    shutil.copytree(pushed[0], root, symlinks=True)
    return root


def all_refs(root: Path) -> set[str]:
    """Every tag and every revision (by digest) the storage holds."""
    inv = scan(Storage.locate(root))
    refs = set()
    for name, repo in inv.repositories.items():
        refs |= {f"{name}:{t}" for t in repo.tags}
        refs |= {f"{name}@{d}" for d in repo.revisions}
    return refs
