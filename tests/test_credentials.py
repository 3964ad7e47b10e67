"""Registry credentials the docker way: credHelpers[HOST], else credsStore, else auths,
from $DOCKER_CONFIG; real helper programs (executable scripts on a PATH of the test's
own) asked as docker asks them; each way a helper fails is one line that shows none of
what it printed."""

from __future__ import annotations

import base64
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.registry.credentials import (
    CredentialHelperError,
    Credentials,
    docker_credentials,
    refresh_grant,
)
from tests.helpers import docker_hashes

HOST = "registry.example:5000"
URL = f"https://{HOST}/prefix"
SECRET = "Zq-helper-secret-7d1f"  # noqa: S105 (what no message may show)

STORE = """\
import json, sys
if sys.argv[1:] != ["get"]:
    sys.exit(f"unexpected arguments {{sys.argv[1:]}}")
host = sys.stdin.read()  # exactly the host: docker writes no newline
with open(__file__ + ".asked", "a") as asked:
    asked.write(host + "\\n")
known = {known!r}
if host not in known:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = known[host]
print(json.dumps({{"ServerURL": host, "Username": user, "Secret": secret}}))
"""


def helper(bindir: Path, name: str, body: str) -> Path:
    """An executable ``docker-credential-NAME`` in ``bindir`` running ``body`` (Python)."""
    bindir.mkdir(exist_ok=True)
    path = bindir / f"docker-credential-{name}"
    path.write_text(f"#!{sys.executable}\n{textwrap.dedent(body)}")
    path.chmod(0o755)
    return path


def store(bindir: Path, name: str, known: dict[str, tuple[str, str]]) -> Path:
    """A helper that knows ``known`` (host -> (user, secret)) and says 'not found' else."""
    return helper(bindir, name, STORE.format(known=known))


def asked(path: Path) -> list[str]:
    where = Path(f"{path}.asked")
    return where.read_text().splitlines() if where.exists() else []


def config(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def bindir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder of helpers first on PATH (and no helper anywhere else that matters)."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.delenv("DOCKER_AUTH_CONFIG", raising=False)
    monkeypatch.setenv("PATH", f"{path}{os.pathsep}{os.environ.get('PATH', '')}")
    return path


def basic(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (  # the host's own helper first, whatever the default store and auths say
            {"credHelpers": {HOST: "a"}, "credsStore": "b", "auths": {HOST: basic("x", "y")}},
            ("from-a", "a-secret"),
        ),
        (  # another host's helper is not this one's: the default store
            {"credHelpers": {"other:1": "a"}, "credsStore": "b"},
            ("from-b", "b-secret"),
        ),
        ({"credsStore": "b", "auths": {HOST: basic("x", "y")}}, ("from-b", "b-secret")),
        (  # credHelpers[HOST] = "" turns the default store off for the host (docker)
            {"credHelpers": {HOST: ""}, "credsStore": "b", "auths": {HOST: basic("x", "y")}},
            ("x", "y"),
        ),
        (  # a helper named is the whole answer: it has none, auths is not asked (docker)
            {"credsStore": "empty", "auths": {HOST: basic("x", "y")}},
            None,
        ),
        ({"auths": {HOST: basic("x", "y")}}, ("x", "y")),
        ({"auths": {HOST: {"username": "u", "password": "p"}}}, ("u", "p")),
        ({"auths": {"https://registry.example:5000/v1/": basic("x", "y")}}, ("x", "y")),
        ({"credsStore": None, "auths": {}}, None),
        ({}, None),
    ],
)
def test_docker_lookup_order(
    tmp_path: Path, bindir: Path, doc: dict[str, object], expected: tuple[str, str] | None
) -> None:
    """credHelpers[HOST], else credsStore, else auths: as docker/cli's GetCredentialsStore."""
    a = store(bindir, "a", {HOST: ("from-a", "a-secret")})
    b = store(bindir, "b", {HOST: ("from-b", "b-secret")})
    store(bindir, "empty", {})
    found = docker_credentials(URL, config(tmp_path, doc))
    want = None if expected is None else Credentials(user=expected[0], password=expected[1])
    assert found == want
    helpers = doc.get("credHelpers")
    assert asked(a) == ([HOST] if isinstance(helpers, dict) and helpers.get(HOST) else [])
    if asked(b):
        assert asked(b) == [HOST]  # the host alone on stdin, once


def test_docker_config_from_the_environment(
    tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store(bindir, "env", {HOST: ("ops", SECRET)})
    path = config(tmp_path, {"credsStore": "env"})
    monkeypatch.setenv("DOCKER_CONFIG", str(path.parent))
    assert docker_credentials(URL) == Credentials(user="ops", password=SECRET)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "nowhere"))
    assert docker_credentials(URL) is None


def test_docker_auth_config_first(
    tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DOCKER_AUTH_CONFIG's auths entry for exactly the host comes before the file and its
    helpers; without one (or not JSON) the file decides, as docker's memory store falls back."""
    b = store(bindir, "b", {HOST: ("from-b", "b-secret")})
    path = config(tmp_path, {"credsStore": "b"})
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps({"auths": {HOST: basic("ci", SECRET)}}))
    assert docker_credentials(URL, path) == Credentials(user="ci", password=SECRET)
    assert asked(b) == []
    other_key = json.dumps({"auths": {f"https://{HOST}": basic("ci", "x")}})
    for other in (other_key, "{not json", '["x"]', json.dumps({"auths": {HOST: "x"}})):
        monkeypatch.setenv("DOCKER_AUTH_CONFIG", other)
        found = docker_credentials(URL, path)
        assert found == Credentials(user="from-b", password="b-secret")  # noqa: S106 (a test's)


def test_an_identity_token(tmp_path: Path, bindir: Path) -> None:
    """The user ``<token>``: the secret is an identity token (a refresh token), no password."""
    store(bindir, "tok", {HOST: ("<token>", SECRET)})
    found = docker_credentials(URL, config(tmp_path, {"credsStore": "tok"}))
    assert found == Credentials(user="", password="", identity_token=SECRET)
    entry = {"auths": {HOST: {"identitytoken": SECRET}}}
    assert docker_credentials(URL, config(tmp_path, entry)) == found


def test_the_refresh_grant_form() -> None:
    """What the token service is sent for an identity token (docker's OAuth2 POST)."""
    form = parse_qs(
        refresh_grant(SECRET, {"service": "reg", "scope": "repository:a:pull"}).decode()
    )
    assert form == {
        "grant_type": ["refresh_token"],
        "refresh_token": [SECRET],
        "client_id": ["regplan"],
        "service": ["reg"],
        "scope": ["repository:a:pull"],
    }


def test_an_answer_read_as_go_reads_it(tmp_path: Path, bindir: Path) -> None:
    """Keys regardless of case, the first JSON value (what follows it ignored)."""
    helper(
        bindir,
        "go",
        f'print(\'{{"serverurl": "h", "username": "ops", "secret": "{SECRET}"}}\\ntrailing\')',
    )
    found = docker_credentials(URL, config(tmp_path, {"credsStore": "go"}))
    assert found == Credentials(user="ops", password=SECRET)


def test_no_secret_in_a_repr() -> None:
    shown = repr(Credentials(user="ops", password=SECRET, identity_token=SECRET + "t"))
    assert "ops" in shown and SECRET not in shown


HANG = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(__file__ + ".pids", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
time.sleep(60)
"""
BAD = {
    "fails": (
        f'import sys\nprint("keychain locked; had {SECRET}")\nsys.exit(2)',
        "failed for registry.example:5000 (exit 2); its output is not shown",
    ),
    "prose": (f'print("user ops secret {SECRET}")', "something other than JSON (not shown)"),
    "list": (f"print('[\"{SECRET}\"]')", "something other than a JSON object"),
    "number": (f'print(\'{{"Username": "ops", "Secret": 7, "x": "{SECRET}"}}\')', "are strings"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_helper_that_answers_badly(tmp_path: Path, bindir: Path, kind: str) -> None:
    body, said = BAD[kind]
    helper(bindir, kind, body)
    with pytest.raises(CredentialHelperError, match="docker-credential-" + kind) as e:
        docker_credentials(URL, config(tmp_path, {"credHelpers": {HOST: kind}}))
    assert said in str(e.value)
    assert SECRET not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_helper_that_hangs_is_stopped_with_what_it_started(
    tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = helper(bindir, "hangs", HANG)
    monkeypatch.setenv("REGPLAN_CREDENTIAL_HELPER_TIMEOUT", "1")
    started = time.monotonic()
    with pytest.raises(CredentialHelperError, match=r"no answer for .* within 1 s"):
        docker_credentials(URL, config(tmp_path, {"credsStore": "hangs"}))
    assert time.monotonic() - started < 10
    pids = [int(p) for p in Path(f"{path}.pids").read_text().split()]
    deadline = time.monotonic() + 5
    while any(map(running, pids)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(map(running, pids))  # the helper and its child are gone


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_helper_that_closes_its_output_and_hangs(
    tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper(bindir, "mute", "import os, time\nos.close(1)\ntime.sleep(60)")
    monkeypatch.setenv("REGPLAN_CREDENTIAL_HELPER_TIMEOUT", "0.5")
    started = time.monotonic()
    with pytest.raises(CredentialHelperError, match=r"no answer for .* within 0.5 s"):
        docker_credentials(URL, config(tmp_path, {"credsStore": "mute"}))
    assert time.monotonic() - started < 5


def test_a_helper_that_never_stops_talking(tmp_path: Path, bindir: Path) -> None:
    """Its stdout is read to 1 MiB, never held further; it is stopped at once."""
    helper(bindir, "talks", f"import sys\nwhile True:\n    sys.stdout.write('{SECRET}' * 4096)")
    started = time.monotonic()
    with pytest.raises(CredentialHelperError, match="more than 1 MiB") as e:
        docker_credentials(URL, config(tmp_path, {"credsStore": "talks"}))
    assert time.monotonic() - started < 10 and SECRET not in str(e.value)


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf", "nan"])
def test_a_timeout_that_is_not_seconds(
    tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    store(bindir, "ok", {HOST: ("ops", SECRET)})
    monkeypatch.setenv("REGPLAN_CREDENTIAL_HELPER_TIMEOUT", value)
    with pytest.raises(CredentialHelperError, match="expected seconds"):
        docker_credentials(URL, config(tmp_path, {"credsStore": "ok"}))


@pytest.mark.parametrize("name", ["../evil", "sub/dir", "c:\\x", "/abs/path"])
def test_a_helper_name_with_a_path_is_refused(tmp_path: Path, bindir: Path, name: str) -> None:
    """docker runs only docker-credential-NAME from PATH; nothing is run."""
    (tmp_path / "evil").mkdir()
    ran = helper(tmp_path / "evil", "x", "open(__file__ + '.ran', 'w')")
    with pytest.raises(CredentialHelperError, match="is not a helper's name"):
        docker_credentials(URL, config(tmp_path, {"credHelpers": {HOST: name}}))
    assert not Path(f"{ran}.ran").exists()


def test_a_helper_not_on_path_or_only_through_a_relative_entry(
    tmp_path: Path, bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = config(tmp_path, {"credsStore": "missing"})
    with pytest.raises(CredentialHelperError, match=r"docker-credential-missing .* not on PATH"):
        docker_credentials(URL, path)
    store(bindir, "missing", {HOST: ("ops", SECRET)})
    monkeypatch.chdir(bindir)
    monkeypatch.setenv("PATH", ".")  # found only as ./docker-credential-missing
    with pytest.raises(CredentialHelperError, match="relative PATH entry"):
        docker_credentials(URL, path)


def test_a_helper_name_that_is_not_a_string(tmp_path: Path) -> None:
    with pytest.raises(CredentialHelperError, match=r"credsStore is not a helper's name"):
        docker_credentials(URL, config(tmp_path, {"credsStore": ["pass"]}))


@pytest.mark.parametrize("kind", ["fails", "prose", "missing", "../evil"])
def test_check_and_the_guard_say_one_line(
    tmp_path: Path, bindir: Path, demo_root: Path, kind: str
) -> None:
    """regplan check, and purge's guard, with a helper that fails: exit 1, one line on
    stderr, no traceback, no secret, and the storage untouched (nothing is asked before)."""
    if kind in BAD:
        helper(bindir, kind, BAD[kind][0])
    docker = config(tmp_path, {"credHelpers": {"127.0.0.1:9": kind}}).parent
    env = {"DOCKER_CONFIG": str(docker), "PATH": os.environ["PATH"]}
    before = docker_hashes(demo_root)
    where = ["--registry-url", "http://127.0.0.1:9", "--root", str(demo_root)]
    for command in (["check", *where], ["purge", "--older-than", "1d", *where]):
        result = CliRunner().invoke(cli, command, env=env, catch_exceptions=False)
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert "docker-credential-" in result.stderr
        assert SECRET not in result.output + result.stderr
    assert docker_hashes(demo_root) == before
