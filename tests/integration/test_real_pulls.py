"""Pull records from the real registry (2.8 and 3.1): its notifications posted to
``regplan pulls serve`` (a real process, SIGKILLed and started again while skopeo keeps
pulling) and its JSON log imported twice; then retention by pull on what they hold."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regplan.demo.samples import demo_pushes
from regplan.pulls.store import Store
from tests.integration.realreg import SKOPEO, RealRegistry, free_port, require_binaries, run

WINDOW = 20
"""Seconds: --pulled-within of the plan that decides by what was pulled."""


class Receiver:
    """``regplan pulls serve`` as its own process (what a SIGKILL really kills)."""

    def __init__(self, db: Path, log: Path) -> None:
        self.db, self.log = db, log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "regplan",
                    "pulls",
                    "serve",
                    "--db",
                    str(self.db),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--token",
                    "t0ken",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while b"receiving notifications" not in self.log.read_bytes():
            assert time.monotonic() < deadline and self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def total(db: Path) -> int:
    """The manifest pulls a store holds (by digest, and by tag where the log did not say
    which manifest the tag gave)."""
    with Store.open(db) as s:
        read = s.read()
    return sum(v.count for v in (*read.digests.values(), *read.tags.values()))


@pytest.fixture
def setup(tmp_path: Path, registry_version: str) -> Iterator[tuple[RealRegistry, Receiver]]:
    require_binaries(registry_version)
    work = tmp_path / "work"
    work.mkdir()
    receiver = Receiver(tmp_path / "pulls.db", work / "receiver.log")
    receiver.start()
    reg = RealRegistry(tmp_path / "root", work, version=registry_version)
    reg.config.write_text(
        reg.config.read_text().replace("log: {level: error}", "log: {level: info, formatter: json}")
        + "notifications:\n  endpoints:\n    - name: regplan\n"
        f"      url: http://127.0.0.1:{receiver.port}/events\n"
        "      headers: {Authorization: [Bearer t0ken]}\n"
        "      timeout: 2s\n      threshold: 3\n      backoff: 200ms\n"
    )
    reg.start()
    yield reg, receiver
    reg.stop()
    receiver.stop()


def skopeo_pull(reg: RealRegistry, ref: str, *extra: str) -> None:
    out = reg.work / f"pull-{time.monotonic_ns()}"
    r = subprocess.run(
        [
            SKOPEO,
            "--insecure-policy",
            "copy",
            "-q",
            "--src-tls-verify=false",
            *extra,
            f"docker://{reg.host}/{ref}",
            f"oci:{out}:x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr


def test_pulls_from_the_real_registry_keep_what_is_pulled(
    setup: tuple[RealRegistry, Receiver], tmp_path: Path
) -> None:
    reg, receiver = setup
    started = time.monotonic()
    images = {(repo, tag): item for repo, tag, item in demo_pushes().pushes}
    for repo, tag in (("team/app", "v1"), ("team/app", "v2"), ("team/tool", "1.0")):
        reg.push(repo, tag, images[(repo, tag)])
    v1 = str(images[("team/app", "v1")].digest)
    # the receiver's records must reach back past the plan's window
    time.sleep(max(0.0, WINDOW + 1 - (time.monotonic() - started)))

    pulls = [
        ("team/app:v1", ()),
        (f"team/app@{v1}", ()),
        ("team/tool:1.0", ("--override-arch", "arm64")),
    ]
    pulls += [(f"team/app@{v1}", ())] * 6
    done: list[str] = []

    def pull_all() -> None:
        for ref, extra in pulls:
            skopeo_pull(reg, ref, *extra)
            done.append(ref)

    puller = threading.Thread(target=pull_all)
    puller.start()
    while len(done) < 2:
        time.sleep(0.05)
    receiver.kill()  # while the registry keeps pulling (and notifying)
    while len(done) < 5:  # pulls whose notifications find no receiver
        time.sleep(0.05)
    receiver.start()
    puller.join()
    assert len(done) == len(pulls)

    # the access log, imported twice, counts each manifest pull once
    log = next(reg.work.glob("registry-*.log"))
    from_log = tmp_path / "log.db"
    for _ in range(2):
        r = run("pulls", "import", "--db", str(from_log), str(log))
        assert r.exit_code == 0, r.output
    expected = total(from_log)
    assert expected == len(pulls) + 1  # the index, then its one platform

    deadline = time.monotonic() + 60  # the registry retries what the dead receiver missed
    while total(receiver.db) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)  # a duplicate would come now
    assert total(receiver.db) == expected  # nothing lost, nothing twice
    lines = log.read_text(errors="replace").splitlines()  # the registry sent some again
    assert any(f":{receiver.port}/events" in line and "refused" in line for line in lines)

    key = tmp_path / "k"
    assert run("keygen", str(key)).exit_code == 0
    out = tmp_path / "p.json"
    args = ["plan", "--root", str(reg.root), "--key", str(key), "-o", str(out), "-q", "--pulls"]
    made = run(
        *args,
        str(receiver.db),
        "--image",
        "team/*",
        "--pulled-within",
        f"{WINDOW}s",
        "--allow-empty-repos",
    )
    assert made.exit_code == 0, made.output
    doc = json.loads(out.read_text())
    verdict = {(i["repo"], i["tag"]): i["verdict"] for i in doc["images"] if i["tag"]}
    assert verdict == {
        ("team/app", "v1"): "kept",
        ("team/app", "v2"): "removed",
        ("team/tool", "1.0"): "kept",
    }
    shown = run("show", str(out))
    assert "last pulled " in shown.output and "(8 pulls)" in shown.output
    same = run(
        *args,
        str(from_log),
        "--image",
        "team/*",
        "--pulled-within",
        f"{WINDOW}s",
        "--allow-empty-repos",
    )  # the log says the same of each image
    assert same.exit_code == 0, same.output
    assert "(8 pulls)" in run("show", str(out)).output

    made = run(*args, str(receiver.db), "--image", "team/*", "--pulled-within", "30d")
    doc = json.loads(out.read_text())
    assert {i["verdict"] for i in doc["images"] if i["tag"]} == {"kept"}
    assert [p["code"] for p in doc["problems"]] == ["pulls-uncovered"]
