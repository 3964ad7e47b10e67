"""Policy files (#24): every mistake is one line with its line and column, the file is
its JSON Schema, and ``plan --policy`` records the file and names the rule in every
reason."""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from markdown_it import MarkdownIt

from regplan.cli import cli
from regplan.demo.samples import build_demo
from regplan.errors import PolicyError
from regplan.policy import load
from tests.helpers import KEY, pem, write_keys

POLICIES = Path(__file__).parents[1] / "policies"

BAD = """\
version: 1
rules:
  - name: a
    repositories: [team/*]
    kep: {newest: 2}
  - name: a
    repositories: ["x:y"]
    keep: {within: 7x, newest: -1}
    untagged: 9999999d
  - name: c
    repositories: [nope/*]
    tags: [a/b]
    tags_regex: "(["
    keep: {by: created}
registry:
  gc_min_age: 1h
  gc: maybe
"""


def test_every_mistake_with_its_line_and_column() -> None:
    with pytest.raises(PolicyError) as e:
        load.read(BAD.encode(), "bad.yml")
    assert e.value.errors == [
        "bad.yml:3:5: rules[0]: give keep (what it keeps of the tags it selects), untagged, "
        "or both",
        "bad.yml:5:5: rules[0]: unknown key 'kep' (expected one of: allow_empty, description, "
        "exclude, exclude_tags_regex, keep, name, repositories, tags, tags_regex, untagged)",
        "bad.yml:6:11: rules[1].name: 'a' names two rules",
        "bad.yml:7:20: rules[1].repositories[0]: 'x:y' is not a repository glob (no tag, "
        "digest or leading or trailing /)",
        "bad.yml:8:20: rules[1].keep.within: '7x' is not an age (a number and a unit: s, m, "
        "h, d, w; 7d)",
        "bad.yml:8:32: rules[1].keep.newest: -1 is less than the minimum of 0",
        "bad.yml:9:15: rules[1].untagged: age '9999999d' is more than 1000 years",
        "bad.yml:12:12: rules[2].tags[0]: 'a/b' is not a tag glob (no / : or @)",
        "bad.yml:13:17: rules[2].tags_regex: '([' is not a regular expression (RE2 refuses it: "
        "missing ]: [)",
        "bad.yml:13:17: rules[2]: tags and tags_regex do not go together",
        "bad.yml:14:11: rules[2].keep: by says how to rank, not what to keep (add newest, "
        "within, tags, regex or all; newest: 0 keeps none)",
        "bad.yml:16:15: registry.gc_min_age goes with gc: true",
        "bad.yml:17:7: registry.gc: 'maybe' is not of type 'boolean'",
    ]
    assert str(e.value).endswith("(and 12 more: regplan policy check bad.yml)")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("version: 1\nrules: [\n", "p.yml:3:1: not YAML: expected the node content"),
        ("", "p.yml: empty; a policy has version: 1 and rules"),
        ("version: 1\nversion: 1\nrules: []\n", "p.yml:2:1: 'version' given twice"),
        ("- a\n", "p.yml:1:1: the policy: ['a'] is not of type 'object'"),
        ("version: 1\n# \x1b[31m\n", "p.yml:2:3: U+001B is not allowed in a policy"),
        ("version: 1\nrules: [\u202e]\n", "p.yml:2:9: U+202E is not allowed in a policy"),
        (
            "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",
            "p.yml:1:4: anchors and aliases are not allowed",
        ),
        ("[" * 20_000 + "]" * 20_000, "p.yml: nested too deeply to be a policy"),
        ("#" * (1 << 20) + "\n", "p.yml: more than 1 MiB; a policy has at most 1 MiB"),
        ("version: 2\nrules: []\n", "p.yml:1:10: version: 1 was expected"),
    ],
)
def test_what_is_not_a_policy(text: str, error: str) -> None:
    with pytest.raises(PolicyError) as e:
        load.read(text.encode(), "p.yml")
    assert e.value.errors[0].startswith(error), e.value.errors


def test_names_and_text_from_the_file_are_inert() -> None:
    """A key or value with an escape sequence is shown escaped, never raw."""
    text = (
        'version: 1\nrules:\n  - name: a\n    repositories: ["a"]\n    keep: {all: true}\n'
        '    "\\e[31mx": 1\n'
    )
    with pytest.raises(PolicyError) as e:
        load.read(text.encode(), "p.yml")
    assert "\x1b" not in str(e.value) and "\\x1b[31mx" in str(e.value)


def test_not_utf8() -> None:
    with pytest.raises(PolicyError, match="not UTF-8"):
        load.read(b"version: 1\n\xff\n", "p.yml")


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.yml")), ids=lambda p: p.name)
def test_every_example_fits_the_schema_and_loads(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    jsonschema.Draft202012Validator(load.schema()).validate(doc)
    policy = load.read(path.read_bytes(), path.name)
    assert policy.rules


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(load.schema())


def test_policy_check_prints_every_mistake_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD)
    r = CliRunner().invoke(cli, ["policy", "check", str(bad)])
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 13 and all(line.startswith(f"Error: {bad}:") for line in lines)


def test_policy_check_on_a_registry_counts_per_rule(demo_root: Path, tmp_path: Path) -> None:
    p = tmp_path / "p.yml"
    p.write_text(
        "version: 1\nrules:\n"
        "  - name: team\n    repositories: [team/*]\n    keep: {newest: 1}\n"
        "  - name: ghost\n    repositories: [ghost/*]\n    keep: {all: true}\n"
    )
    r = CliRunner().invoke(cli, ["policy", "check", str(p), "--root", str(demo_root), "--json"])
    assert r.exit_code == 1  # a rule that selects nothing is a mistake
    assert f"Error: {p}:6:1: rule 'ghost' selects no repository on {demo_root}" in r.output
    counts = json.loads(r.stdout)
    assert [(c["rule"], c["repositories"], c["removes"]) for c in counts] == [
        ("team", 4, 3),
        ("ghost", 0, 0),
    ]


def planned(root: Path, tmp_path: Path, name: str, policy: str) -> tuple[Path, Path]:
    """``plan --policy`` with ``policy`` written to ``name``: (the plan, the policy file)."""
    key, _ = write_keys(tmp_path)
    p = tmp_path / name
    p.write_text(policy)
    out = tmp_path / "plan.json"
    args = ["plan", "--root", str(root), "--key", str(key), "-o", str(out), "-q"]
    r = CliRunner().invoke(cli, [*args, "--policy", str(p)])
    assert r.exit_code == 0, r.output
    return out, p


def test_plan_with_a_policy_records_it_and_names_the_rule(demo_root: Path, tmp_path: Path) -> None:
    out, p = planned(
        demo_root,
        tmp_path,
        "cleanup.yml",
        "version: 1\nrules:\n"
        "  - name: team\n    repositories: [team/*]\n    keep: {newest: 1}\n"
        "registry:\n  gc: true\n",
    )
    raw = json.loads(out.read_bytes())
    recorded = raw["request"]["policy"]
    assert recorded["text"] == p.read_text() and recorded["file"] == str(p)
    assert recorded["sha256"] == load.read(p.read_bytes(), "x").sha256
    assert raw["request"]["selection"]["gc"] is True
    removed = [i for i in raw["images"] if i["verdict"] == "removed" and not i["attached_to"]]
    assert removed, raw["images"]
    assert all(f'policy rule "team" ({p}:3)' in i["reason"] for i in removed), removed
    attached = [i for i in raw["images"] if i["verdict"] == "removed" and i["attached_to"]]
    assert attached and all("which this plan removes" in i["reason"] for i in attached)
    shown = CliRunner().invoke(cli, ["show", str(out), "--format", "markdown"]).output
    assert "| Policy |" in shown and "## Policy" in shown and "name: team" in shown
    review = json.loads(CliRunner().invoke(cli, ["show", str(out), "--json"]).output)
    assert review["policy"] == {"file": str(p), "sha256": recorded["sha256"]}


def test_a_policy_cannot_break_out_of_the_ticket(demo_root: Path, tmp_path: Path) -> None:
    """Its text sits in a fence longer than any run of backticks in it."""
    out, _ = planned(
        demo_root,
        tmp_path,
        "p.yml",
        "# ````\n# </details><script>alert(1)</script> [x](http://evil)\n"
        "version: 1\nrules:\n  - name: a\n    repositories: [team/*]\n    keep: {newest: 1}\n",
    )
    md = CliRunner().invoke(cli, ["show", str(out), "--format", "markdown"]).output
    tokens = MarkdownIt("gfm-like").parse(md)
    fences = [t for t in tokens if t.type == "fence" and t.info == "yaml"]
    assert len(fences) == 1 and "<script>" in fences[0].content
    assert not any(t.type == "html_block" for t in tokens)


def test_flags_that_a_policy_holds_are_refused_beside_it(demo_root: Path, tmp_path: Path) -> None:
    key, _ = write_keys(tmp_path)
    p = POLICIES / "cleanup.yml"
    args = ["plan", "--root", str(demo_root), "--key", str(key), "--policy", str(p)]
    r = CliRunner().invoke(cli, [*args, "--gc", "--image", "team/app"])
    assert r.exit_code == 64
    assert "--policy holds the rules: put --image, --gc in the policy file" in r.output
    r = CliRunner().invoke(cli, [*args, "--sort-by", "created"])
    assert r.exit_code == 64 and "put --sort-by in the policy file" in r.output


class _Endless(io.RawIOBase):
    """A stream that never ends (as /dev/zero, or a pipe that keeps writing), counting
    what was read of it."""

    def __init__(self) -> None:
        self.given = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = len(buffer)
        buffer[:n] = b"#" * n
        self.given += n
        return n


def test_a_policy_stream_is_read_to_the_cap_and_no_further() -> None:
    """#33: at most 1 MiB and one byte is read of a stream that has no end."""
    endless = _Endless()
    with pytest.raises(PolicyError) as e:
        load.read_stream(io.BufferedReader(endless), "stdin")
    assert e.value.errors == ["stdin: more than 1 MiB; a policy has at most 1 MiB"]
    assert endless.given <= load.MAX_BYTES + 1 + io.DEFAULT_BUFFER_SIZE


def _limited(*args: str, stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    """regplan in a process held to 2 GiB of address space (a read without end fails
    there with a MemoryError, not the machine)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "regplan", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        check=False,
    )


def test_policy_check_of_dev_zero_is_one_line() -> None:
    """A device without end is refused at the cap, with one line (no MemoryError)."""
    r = _limited("policy", "check", "/dev/zero")
    assert r.returncode == PolicyError.exit_code, r.stderr[-500:]
    assert r.stderr.splitlines() == [
        "Error: /dev/zero: more than 1 MiB; a policy has at most 1 MiB"
    ]


def test_plan_policy_from_an_endless_stdin_is_one_line(tmp_path: Path) -> None:
    """``plan --policy -`` with stdin that never ends: refused at the cap."""
    key = tmp_path / "plan.key"
    key.write_bytes(pem(KEY))
    root = tmp_path / "registry"
    build_demo(root)
    with open("/dev/zero", "rb") as zero:
        r = _limited(
            *("plan", "--root", str(root), "--key", str(key), "--signer", "t"),
            *("-o", str(tmp_path / "p.json"), "--policy", "-"),
            stdin=zero.fileno(),
        )
    assert r.returncode == PolicyError.exit_code, r.stderr[-500:]
    assert r.stderr.splitlines()[-1] == (
        "Error: stdin: more than 1 MiB; a policy has at most 1 MiB"
    )
