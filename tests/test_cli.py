"""The command line end to end, exit codes included (README: Exit codes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import docker_hashes


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def run(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(cli, list(args), catch_exceptions=False, env=env)


@pytest.fixture
def keys(runner: CliRunner, tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "keys" / "plan.key"
    result = run(runner, "keygen", str(key))
    assert result.exit_code == 0, result.output
    return key, Path(f"{key}.pub")


def make(runner: CliRunner, root: Path, key: Path, out: Path, *sel: str) -> Result:
    return run(runner, "plan", "--root", str(root), "--key", str(key), "-o", str(out), *sel)


def test_plan_show_verify(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    out = tmp_path / "p.json"
    r = make(runner, demo_root, key, out, "--image", "team/app:v1", "--untagged", "team/*")
    assert r.exit_code == 0
    assert f"written to {out}" in r.output
    shown = run(runner, "show", str(out))
    assert "Removes " in shown.output and "old/repo:2019" in shown.output
    assert "regplan show PLAN --targets" in shown.output
    every = run(runner, "show", str(out), "--targets").output
    assert "  tag         repositories/team/app/_manifests/tags/v1" in every
    md = run(runner, "show", str(out), "--format", "markdown")
    assert md.output.startswith("# regplan plan `")
    as_json = json.loads(run(runner, "show", str(out), "--format", "json").output)
    assert as_json["format"] == "regplan.review"
    ok = run(runner, "verify", str(out), "--trust", str(pub))
    assert ok.exit_code == 0
    assert ok.output.startswith("OK: plan ")


def test_json_output_is_only_json(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    out = tmp_path / "p.json"
    r = runner.invoke(
        cli,
        [
            "plan",
            "--root",
            str(demo_root),
            "--key",
            str(key),
            "-o",
            str(out),
            "--untagged",
            "*",
            "--json",
        ],
    )
    doc = json.loads(r.stdout)
    assert doc["path"] == str(out)
    assert doc["targets"] > 0
    v = runner.invoke(cli, ["verify", str(out), "--trust", str(pub), "--json"])
    assert json.loads(v.stdout)["valid"] is True


def test_default_output_and_env(
    runner: CliRunner,
    demo_root: Path,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REGISTRY_DATA_DIR and REGPLAN_KEY stand in for --root and --key; plans/ by default."""
    key, pub = keys
    monkeypatch.chdir(tmp_path)
    r = run(
        runner,
        "plan",
        "--prune",
        env={"REGISTRY_DATA_DIR": str(demo_root), "REGPLAN_KEY": str(key)},
    )
    assert r.exit_code == 0, r.output
    [written] = (tmp_path / "plans").glob("*.plan.json")
    assert written.name[:8].isdigit()
    v = run(runner, "verify", str(written), env={"REGPLAN_TRUST": str(pub)})
    assert v.exit_code == 0, v.output


def test_detailed_exitcode(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, _ = keys
    r = make(runner, demo_root, key, tmp_path / "a.json", "--untagged", "*", "--detailed-exitcode")
    assert r.exit_code == 2
    r = make(
        runner, demo_root, key, tmp_path / "b.json", "--untagged", "old/*", "--detailed-exitcode"
    )
    assert r.exit_code == 0


def test_tampered_plan_exit_3(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    out = tmp_path / "p.json"
    make(runner, demo_root, key, out, "--image", "team/app:v1")
    doc = json.loads(out.read_text())
    doc["targets"][0]["path"] = "repositories/old/repo"
    out.write_text(json.dumps(doc))
    r = run(runner, "verify", str(out), "--trust", str(pub))
    assert r.exit_code == 3
    assert r.output.startswith("Error: signature by ed25519:")
    assert r.output.count("\n") == 1


def test_untrusted_key_exit_3(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, _ = keys
    other = tmp_path / "other.key"
    run(runner, "keygen", str(other))
    out = tmp_path / "p.json"
    make(runner, demo_root, key, out, "--image", "team/app:v1")
    r = run(runner, "verify", str(out), "--trust", f"{other}.pub")
    assert r.exit_code == 3
    assert "0 valid signature(s) from trusted keys" in r.output


def test_stale_plan_exit_4_names_change(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    out = tmp_path / "p.json"
    make(runner, demo_root, key, out, "--image", "team/app:v1")
    v2 = FsStorage.locate(demo_root).v2
    (v2 / "repositories/old/repo/_manifests/tags/new/current").mkdir(parents=True)
    r = run(runner, "verify", str(out), "--trust", str(pub))
    assert r.exit_code == 4
    assert "stale" in r.output and "repositories/old/repo (changed)" in r.output


def test_plan_for_another_tree_exit_4(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    from regplan.demo.samples import Registry, image

    key, pub = keys
    out = tmp_path / "p.json"
    make(runner, demo_root, key, out, "--image", "team/app:v1")
    other = tmp_path / "other"
    Registry.create(other).push("x/y", image([{"a": b"b"}]), "t")
    r = run(runner, "verify", str(out), "--trust", str(pub), "--root", str(other))
    assert r.exit_code == 4
    assert "repositories/x/y (new)" in r.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["plan", "--image", "nope"], 1, "Error: --image nope: no repository matches"),
        (["plan"], 64, "nothing selected"),
        (["plan", "--image", "team/app:v1", "--root", "/nonexistent"], 1, "no such directory"),
    ],
)
def test_errors_are_one_line(
    runner: CliRunner,
    demo_root: Path,
    keys: tuple[Path, Path],
    args: list[str],
    code: int,
    message: str,
) -> None:
    key, _ = keys
    full = [*args, "--key", str(key)]
    if "--root" not in args:
        full += ["--root", str(demo_root)]
    r = run(runner, *full)
    assert r.exit_code == code
    assert message in r.output


def test_not_registry_storage(runner: CliRunner, keys: tuple[Path, Path], tmp_path: Path) -> None:
    key, _ = keys
    r = run(runner, "plan", "--root", str(tmp_path), "--key", str(key), "--prune")
    assert r.exit_code == 1
    assert "is not registry storage: expected docker/registry/v2" in r.output


def test_demo_command(runner: CliRunner, tmp_path: Path) -> None:
    """#20.11: the demo's review is what `regplan show --trust` prints of the plan it
    wrote (it showed an empty one), its Markdown pins the file, and it takes the safe
    path (--registry-stopped, recorded)."""
    r = run(runner, "demo", str(tmp_path / "d"))
    assert r.exit_code == 0, r.output
    assert "5. regplan verify" in r.output
    plan = tmp_path / "d" / "plans" / "demo.plan.json"
    key = tmp_path / "d" / "keys" / "planner.key.pub"
    shown = run(runner, "show", str(plan), "--trust", str(key)).output
    assert "".join(f"   {line}\n" for line in shown.splitlines()).rstrip() in r.output
    assert "Removes 3 images and keeps 8" in shown
    md = (tmp_path / "d" / "plans" / "demo.plan.md").read_text()
    assert md == run(runner, "show", str(plan), "--format", "markdown", "--trust", str(key)).output
    assert "SHA-256 `" in md and "## Images" in md
    assert "--registry-stopped" in r.output and "registry: the operator said" in r.output


def test_apply_history_rollback_purge_cycle(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    out = tmp_path / "p.json"
    make(runner, demo_root, key, out, "--image", "team/app:v1", "--untagged", "*", "--prune")
    r = runner.invoke(cli, ["apply", str(out), "--trust", str(pub), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {"apply_id", "moved", "bytes"} <= doc.keys() and doc["moved"] > 0
    apply_id = doc["apply_id"]
    again = run(runner, "apply", str(out), "--trust", str(pub))
    assert again.exit_code == 4
    assert (
        again.output == f"Error: plan {json.loads(out.read_text())['plan_id']} was already "
        f"applied as {apply_id}\n"
    )
    h = runner.invoke(cli, ["history", "--root", str(demo_root), "--json"])
    [entry] = json.loads(h.stdout)
    assert entry["state"] == "applied" and entry["apply_id"] == apply_id
    assert {"apply_id", "state", "plan_id", "started_at", "bytes"} <= entry.keys()
    text = run(runner, "history", "--root", str(demo_root))
    assert apply_id in text.output and "applied" in text.output
    back = run(runner, "rollback", apply_id, "--root", str(demo_root))
    assert back.exit_code == 0 and "Restart the registry" in back.output
    redo = runner.invoke(cli, ["apply", str(out), "--trust", str(pub), "--json"])
    second = json.loads(redo.stdout)["apply_id"]
    p = run(runner, "purge", "--older-than", "0s", "--root", str(demo_root))
    assert p.exit_code == 0 and second in p.output
    states = [
        e["state"]
        for e in json.loads(
            runner.invoke(cli, ["history", "--root", str(demo_root), "--json"]).stdout
        )
    ]
    assert states == ["rolled-back", "purged"]


def test_quiet_plan_apply_rollback_purge_print_nothing_when_they_succeed(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """#33.12: ``-q`` silences the summaries (and the next steps) of plan, apply,
    rollback and purge; the exit code says the rest, and ``--json`` is still printed."""
    key, pub = keys
    out = tmp_path / "p.json"
    sel = ("--image", "team/app:v1", "--untagged", "*")
    r = make(runner, demo_root, key, out, *sel, "-q")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "") and out.exists()
    as_json = make(runner, demo_root, key, tmp_path / "j.json", *sel, "-q", "--json")
    assert json.loads(as_json.stdout)["path"] == str(tmp_path / "j.json")
    r = run(runner, "apply", str(out), "--trust", str(pub), "-q")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    [entry] = json.loads(run(runner, "history", "--root", str(demo_root), "--json").stdout)
    r = run(runner, "rollback", entry["apply_id"], "--root", str(demo_root), "-q")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    r = run(runner, "apply", str(tmp_path / "j.json"), "--trust", str(pub), "-q", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["moved"] > 0
    r = run(runner, "purge", json.loads(r.stdout)["apply_id"], "--root", str(demo_root), "-q")
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")


def test_the_whole_cycle_with_walks_in_shares(
    runner: CliRunner,
    demo_root: Path,
    keys: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a large registry runs: every walk in forked shares. The plan is the
    one-process plan, and apply and rollback round-trip the tree byte for byte."""
    key, pub = keys
    before = docker_hashes(demo_root)
    sel = ("--image", "team/app:v1", "--untagged", "*", "--prune", "--gc")
    monkeypatch.setenv("REGPLAN_JOBS", "1")
    one = tmp_path / "one.json"
    assert make(runner, demo_root, key, one, *sel).exit_code == 0
    monkeypatch.setenv("REGPLAN_JOBS", "2")
    two = tmp_path / "two.json"
    assert make(runner, demo_root, key, two, *sel).exit_code == 0
    plans = [json.loads(p.read_text()) for p in (one, two)]
    assert plans[0]["fingerprint"] == plans[1]["fingerprint"]
    assert plans[0]["targets"] == plans[1]["targets"] != []
    assert plans[0]["kept"] == plans[1]["kept"]

    assert run(runner, "verify", str(two), "--trust", str(pub), "-q").exit_code == 0
    r = runner.invoke(cli, ["apply", str(two), "--trust", str(pub), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["moved"] == len(plans[1]["targets"])
    assert docker_hashes(demo_root) != before
    back = run(runner, "rollback", doc["apply_id"], "--root", str(demo_root))
    assert back.exit_code == 0, back.output
    assert docker_hashes(demo_root) == before


def test_approve_and_require_signatures(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    reviewer = tmp_path / "reviewer.key"
    run(runner, "keygen", str(reviewer))
    out = tmp_path / "p.json"
    make(runner, demo_root, key, out, "--image", "team/app:v1")
    trust = ["--trust", str(pub), "--trust", f"{reviewer}.pub"]
    r = run(runner, "apply", str(out), *trust, "--require-signatures", "2")
    assert r.exit_code == 3 and "1 valid signature(s) from trusted keys, 2 required" in r.output
    a = run(runner, "approve", str(out), "--key", str(reviewer), "--trust", str(pub))
    assert a.exit_code == 0 and "the plan file is unchanged" in a.output
    r = run(runner, "apply", str(out), *trust, "--require-signatures", "2")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["purge"], 64, "give an APPLY_ID or --older-than AGE"),
        (["purge", "--older-than", "soon"], 64, "age 'soon': expected a number and a unit"),
        (["rollback", "nope"], 1, "no apply nope in"),
        (["history"], 0, "No applies recorded."),
    ],
)
def test_state_command_errors(
    runner: CliRunner, demo_root: Path, args: list[str], code: int, message: str
) -> None:
    r = run(runner, *args, "--root", str(demo_root))
    assert r.exit_code == code
    assert message in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep-last", "3"], "retention rules apply to the tags of --image repositories"),
        (["--gc-min-age", "1h", "--prune"], "--gc-min-age goes with --gc"),
        (["--gc", "--gc-min-age", "soon"], "age 'soon'"),
        (["--image", "team/*", "--match", "("], "--match '(': not a regular expression"),
    ],
)
def test_rule_usage_errors(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], args: list[str], message: str
) -> None:
    key, _ = keys
    r = run(runner, "plan", "--root", str(demo_root), "--key", str(key), *args)
    assert r.exit_code in (1, 64)
    assert message in r.output


@pytest.mark.parametrize(
    "args",
    [
        ["--keep-last", "3"],  # retention without --image
        ["--untagged", "*", "--no-such-flag"],
        ["--untagged", "*", "--older-than"],  # a missing value
    ],
)
def test_a_usage_error_never_reads_as_targets_planned(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], args: list[str]
) -> None:
    """With --detailed-exitcode, 2 means "targets planned": a usage error exits 64."""
    key, _ = keys
    r = run(
        runner, "plan", "--root", str(demo_root), "--key", str(key), "--detailed-exitcode", *args
    )
    assert r.exit_code == 64, r.output


def test_unknown_command_is_a_usage_error(runner: CliRunner) -> None:
    assert run(runner, "nosuch").exit_code == 64
    assert run(runner, "--nosuch-option").exit_code == 64


def test_retention_and_gc_recorded_in_plan(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    key, pub = keys
    out = tmp_path / "p.json"
    r = make(
        runner,
        demo_root,
        key,
        out,
        "--image",
        "team/app",
        "--keep-last",
        "1",
        "--keep",
        "latest",
        "--gc",
        "--gc-min-age",
        "0s",
        "--uploads-older-than",
        "30d",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    sel = doc["request"]["selection"]
    assert (sel["keep_last"], sel["keep"], sel["gc"], sel["gc_min_age"]) == (
        1,
        "latest",
        True,
        "0s",
    )
    assert "--keep-last=1" in doc["request"]["argv"] and "--gc" in doc["request"]["argv"]
    tags = {t["path"].rsplit("/", 1)[1] for t in doc["targets"] if t["kind"] == "tag"}
    assert tags == {"v1", "v2"}
    assert run(runner, "verify", str(out), "--trust", str(pub)).exit_code == 0


def test_apply_and_rollback_advise_from_the_registry_config(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A redis blob descriptor cache survives a restart: the flush commands are printed;
    read-only mode is to be lifted once the check is clean. The config's http.addr is
    probed (nothing listens there: stopped)."""
    key, pub = keys
    config = tmp_path / "config.yml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config.write_text(
        f"storage:\n  filesystem: {{rootdirectory: {demo_root}}}\n"
        "  maintenance: {readonly: {enabled: true}}\n  cache: {blobdescriptor: redis}\n"
        f"redis: {{addr: cache.local:6380}}\nhttp: {{addr: '127.0.0.1:{port}'}}\n"
    )
    plan = tmp_path / "p.json"
    assert make(runner, demo_root, key, plan, "--image", "old/repo:2019").exit_code == 0
    applied = run(runner, "apply", str(plan), "--trust", str(pub), "--config", str(config))
    assert applied.exit_code == 0, applied.output
    assert "redis-cli -h cache.local -p 6380 --scan --pattern 'blobs::*'" in applied.output
    assert "storage.maintenance.readonly on: turn it off" in applied.output
    url = f"http://127.0.0.1:{port}"
    # the next steps run as printed: with the --config the operator gave (#32.6)
    assert f"regplan check --registry-url {url} --config {config} --plan {plan}" in applied.output
    [record] = json.loads(run(runner, "history", "--root", str(demo_root), "--json").output)
    assert record["registry"].startswith(f"probed {url}: stopped")
    apply_id = applied.output.split(" as ", 1)[1].split(":", 1)[0]
    back = run(runner, "rollback", apply_id, "--config", str(config))
    assert back.exit_code == 0, back.output
    assert "a restart does not" in back.output


def test_a_closed_pipe_ends_show_quietly(
    runner: CliRunner, demo_root: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """`regplan show PLAN | head` ends without "Error: Broken pipe" (the reader closed
    its end before regplan wrote a line)."""
    key, _ = keys
    plan = tmp_path / "p.json"
    assert make(runner, demo_root, key, plan, "--untagged", "*").exit_code == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "regplan", "show", str(plan), "--targets"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) in (0, -signal.SIGPIPE)
    assert err == b""


def test_shell_completion_as_the_readme_says() -> None:
    """`eval "$(_REGPLAN_COMPLETE=bash_source regplan)"` installs completion; completing
    `regplan sh` offers show."""
    env = {**os.environ, "_REGPLAN_COMPLETE": "bash_source"}
    script = subprocess.run(
        [sys.executable, "-m", "regplan"], env=env, capture_output=True, text=True, check=True
    )
    assert "_regplan_completion()" in script.stdout
    env.update(_REGPLAN_COMPLETE="bash_complete", COMP_WORDS="regplan sh", COMP_CWORD="1")
    done = subprocess.run(
        [sys.executable, "-m", "regplan"], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "plain,show"
