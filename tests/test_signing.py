from __future__ import annotations

import copy
import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from regplan import workflow
from regplan.cli import cli
from regplan.errors import KeyFileError, PlanFormatError, SignatureError
from regplan.plans import codec, signing
from tests.helpers import KEY, NOW, OTHER_KEY, make_plan, selection, write_pub


@pytest.fixture
def raw(demo_root: Path) -> dict[str, Any]:
    plan = make_plan(demo_root, selection(("team/app:v1",), ("team/*",), prune=True))
    return codec.unstructure(plan)


def trusted(tmp_path: Path, *keys: Any) -> list[signing.TrustedKey]:
    return [signing.load_trusted(write_pub(k, tmp_path / f"k{i}.pub")) for i, k in enumerate(keys)]


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))
    else:
        yield path


def mutate(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return str(value) + "x"


def test_keygen_writes_private_0600_and_one_line_public(tmp_path: Path) -> None:
    key = tmp_path / "conf" / "plan.key"
    keyid = signing.keygen(key, comment="alice@host")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = (tmp_path / "conf" / "plan.key.pub").read_text()
    assert pub.count("\n") == 1
    assert pub.startswith("regplan-ed25519 ")
    assert pub.rstrip().endswith("alice@host")
    assert signing.load_trusted(Path(f"{key}.pub")).keyid == keyid
    signing.load_private(key)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        signing.keygen(key, comment="x")


def test_bad_key_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("hello")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        signing.load_private(junk)
    with pytest.raises(KeyFileError, match="junk:1:6: not a trusted key line"):
        signing.load_trusted(junk)
    with pytest.raises(KeyFileError, match="cannot read"):
        signing.load_private(tmp_path / "missing")


def test_valid_signature_verifies(raw: dict[str, Any], tmp_path: Path) -> None:
    [k] = signing.verify(raw, trusted(tmp_path, KEY))
    assert k.keyid == signing.keyid_of(KEY.public_key())


def test_every_edited_value_fails(raw: dict[str, Any], tmp_path: Path) -> None:
    """Any single value changed anywhere in the body breaks the signature."""
    keys = trusted(tmp_path, KEY)
    body_leaves = [p for p in leaves(raw) if p[0] != "signatures"]
    assert len(body_leaves) > 100
    for path in body_leaves:
        edited = copy.deepcopy(raw)
        node = edited
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = mutate(node[path[-1]])
        with pytest.raises(SignatureError, match="changed after it was signed"):
            signing.verify(edited, keys)


def test_dropped_target_and_changed_role_fail(raw: dict[str, Any], tmp_path: Path) -> None:
    keys = trusted(tmp_path, KEY)
    edited = copy.deepcopy(raw)
    edited["targets"].pop()
    with pytest.raises(SignatureError):
        signing.verify(edited, keys)
    edited = copy.deepcopy(raw)
    edited["signatures"][0]["role"] = "approver"
    with pytest.raises(SignatureError):
        signing.verify(edited, keys)


def test_reformatting_keeps_signature(raw: dict[str, Any], tmp_path: Path) -> None:
    """Whitespace and key order are not values."""
    reformatted = json.loads(json.dumps(raw, sort_keys=True, indent=7))
    signing.verify(reformatted, trusted(tmp_path, KEY))


def test_untrusted_key_fails(raw: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match=r"0 valid signature.*untrusted ed25519:"):
        signing.verify(raw, trusted(tmp_path, OTHER_KEY))


def test_unsigned_and_no_trust(raw: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="no trusted keys"):
        signing.verify(raw, [])
    with pytest.raises(SignatureError, match="not signed"):
        signing.verify({**raw, "signatures": []}, trusted(tmp_path, KEY))


def test_approval_counts_distinct_keys(demo_root: Path, tmp_path: Path) -> None:
    plan = make_plan(demo_root, selection(("team/app:v1",)))
    keys = trusted(tmp_path, KEY, OTHER_KEY)
    with pytest.raises(SignatureError, match=r"1 valid signature.*2 required"):
        signing.verify(codec.unstructure(plan), keys, required=2)
    approved = signing.sign(plan, OTHER_KEY, role="approver", signer="bob", now=NOW)
    assert approved.targets == plan.targets
    assert len(signing.verify(codec.unstructure(approved), keys, required=2)) == 2
    twice = signing.sign(plan, KEY, role="approver", signer="alice-again", now=NOW)
    with pytest.raises(SignatureError, match="2 required"):
        signing.verify(codec.unstructure(twice), keys, required=2)


def test_codec_round_trip_and_strictness(raw: dict[str, Any]) -> None:
    plan = codec.structure(raw, source="p")
    assert codec.unstructure(plan) == raw
    data = codec.dumps(plan)
    assert data.endswith(b"}\n")
    assert codec.dumps(codec.structure(json.loads(data), source="p")) == data
    with pytest.raises(PlanFormatError, match="extra fields"):
        codec.structure({**raw, "surprise": 1}, source="p")
    with pytest.raises(PlanFormatError, match="version 2 is not supported"):
        codec.check_format({**raw, "version": 2}, source="p")
    with pytest.raises(PlanFormatError, match="not a regplan plan"):
        codec.check_format({}, source="p")


def test_a_plan_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(PlanFormatError, match="not UTF-8"):
        workflow.load_plan(path)


@pytest.mark.parametrize("lists", ["full", "empty", "batches"])
def test_streamed_encodings_equal_the_whole_ones(
    raw: dict[str, Any], lists: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan file and the signed body are written piece by piece: same bytes."""
    if lists == "batches":
        monkeypatch.setattr(codec, "BATCH", 3)
    if lists == "empty":
        raw = {**raw, "targets": [], "kept": [], "problems": []}
    plan = codec.structure(raw, source="p")
    assert codec.dumps(plan) == (json.dumps(raw, indent=2, ensure_ascii=False) + "\n").encode()
    whole = codec.canonical(codec.body(raw))
    assert b"".join(codec.body_chunks(plan)) == whole
    assert b"".join(codec.raw_body_chunks(raw)) == whole


scalars = st.one_of(st.text(), st.integers(), st.booleans(), st.none())


@given(st.dictionaries(st.text(), st.one_of(scalars, st.lists(scalars), st.floats())))
def test_plan_items_are_indented_exactly_like_json(item: dict[str, Any]) -> None:
    """The fast writer of list items (codec._pretty) against the json module."""
    expected = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n    ")
    assert codec._pretty(item, "    ") == expected


@pytest.mark.parametrize(
    "path", ["/etc", "repositories/../../etc", "repositories", "docker/x", "blobs//a", "blobs/./a"]
)
def test_plan_paths_outside_the_tree_are_refused(raw: dict[str, Any], path: str) -> None:
    """Even a validly signed plan cannot name a path outside blobs/ or repositories/."""
    edited = copy.deepcopy(raw)
    edited["targets"][0]["path"] = path
    with pytest.raises(PlanFormatError, match="target path"):
        codec.structure(edited, source="p")


def test_a_trust_file_with_several_keys_trusts_each_by_its_own_name(
    demo_root: Path, tmp_path: Path
) -> None:
    """#33: a team keeps its keys in one file, a line each: every key in it is trusted,
    each under the name on its own line (not the first key alone, named with the rest)."""
    runner = CliRunner()
    for name in ("alice", "bob"):
        made = runner.invoke(cli, ["keygen", str(tmp_path / name), "--comment", f"{name}@ops"])
        assert made.exit_code == 0, made.output
    team = tmp_path / "team.pub"
    team.write_text(
        "# the ops team\n"
        + (tmp_path / "alice.pub").read_text()
        + "\n"
        + (tmp_path / "bob.pub").read_text()
    )
    keys = signing.trusted_from([team])
    assert [k.name for k in keys] == ["alice@ops", "bob@ops"]
    plan = tmp_path / "p.json"
    args = ["plan", "--root", str(demo_root), "--key", str(tmp_path / "alice"), "-o", str(plan)]
    assert runner.invoke(cli, [*args, "--image", "team/app:v1"]).exit_code == 0
    approved = runner.invoke(
        cli, ["approve", str(plan), "--key", str(tmp_path / "bob"), "--trust", str(team)]
    )
    assert approved.exit_code == 0, approved.output
    shown = runner.invoke(cli, ["show", str(plan), "--trust", str(team)]).output
    assert "VALID planner alice@ops (" in shown and "VALID approver bob@ops (" in shown
    verified = runner.invoke(
        cli,
        [
            "verify",
            str(plan),
            "--trust",
            str(team),
            "--require-signatures",
            "2",
            "--root",
            str(demo_root),
        ],
    )
    assert verified.exit_code == 0, verified.output


def test_a_malformed_line_of_a_trust_file_is_named(tmp_path: Path) -> None:
    pub = write_pub(KEY, tmp_path / "k.pub")
    pub.write_text(pub.read_text() + "regplan-ed25519 notbase64 mallory\n")
    with pytest.raises(KeyFileError, match=r"k\.pub:2: malformed Ed25519 public key"):
        signing.trusted_from([pub])
    empty = tmp_path / "none.pub"
    empty.write_text("# nobody yet\n")
    with pytest.raises(KeyFileError, match="holds no key"):
        signing.trusted_from([empty])
