"""A plan whose lists are a Parquet file beside it (plans/body.py): the same plan written
both ways reads the same everywhere; the Parquet is pinned, signed through its SHA-256,
and kept with the apply's state on every store."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import attrs
import jsonschema
import pytest
from click.testing import CliRunner, Result

from regplan import workflow
from regplan.changes import applies
from regplan.changes.records import ApplyRecord, State
from regplan.cli import cli
from regplan.cli.base import load_key
from regplan.errors import PlanFormatError
from regplan.plans import body as planbody
from regplan.plans.planfile import PlanStream
from regplan.plans.sshkeys import SshKey
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.s3.bucket import S3Storage
from regplan.storage.seam import Store
from tests.helpers import content_hashes, selection
from tests.s3server import objects
from tests.test_seam import STORES


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def key(tmp_path: Path) -> Path:
    made = run("keygen", str(tmp_path / "k"), "--comment", "alice@ops")
    assert made.exit_code == 0, made.output
    return tmp_path / "k"


def both(root: Path, key: Path, out: Path, *images: str) -> tuple[Path, Path]:
    """One plan (one draft, one plan_id), written with its lists in the JSON and in a
    Parquet body: (json plan, parquet plan)."""
    private, name = load_key(str(key), None)
    sel = selection(images or ("team/app:v1",), ("team/*",))
    out.mkdir(exist_ok=True)
    with workflow.make_plan(
        storage=FsStorage.locate(root),
        selection=sel,
        argv=["regplan", "plan", "--root", str(root)],
        key=private,
        signer=name,
        now=datetime.now(UTC).replace(microsecond=0),
    ) as draft:
        workflow.write_plan(draft, out / "j.plan.json", body="json")
        workflow.write_plan(draft, out / "p.plan.json", body="parquet")
    return out / "j.plan.json", out / "p.plan.json"


def _same_text(out: str, plan: Path) -> str:
    """``out`` with the plan file's name and SHA-256 (the one line that differs) masked."""
    sha = hashlib.sha256(plan.read_bytes()).hexdigest()
    return out.replace(str(plan), "PLAN").replace(sha, "SHA")


def test_one_plan_written_both_ways_reads_the_same(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    j, p = both(demo_root, key, tmp_path / "plans")
    assert (tmp_path / "plans" / "p.plan.body.parquet").is_file()
    raw = json.loads(p.read_text())
    assert not set(raw) & {"targets", "kept", "problems", "images"}
    assert raw["body"]["file"] == "p.plan.body.parquet" and raw["body"]["counts"]["targets"] > 0
    trust = ("--trust", f"{key}.pub")
    for fmt in ("text", "markdown", "html", "json"):
        shown = [run("show", str(plan), "--format", fmt, *trust) for plan in (j, p)]
        assert shown[0].exit_code == shown[1].exit_code == 0, shown[1].output
        assert _same_text(shown[0].output, j) == _same_text(shown[1].output, p), fmt
    assert "VALID" in run("show", str(p), *trust).output
    for ref in ("team/app:v1", "team/app", "team/tool:1.0", "no/such:tag"):
        said = [run("why", str(plan), ref, "--json") for plan in (j, p)]
        assert (said[0].exit_code, said[0].output) == (said[1].exit_code, said[1].output)
    for plan in (j, p):
        ok = run("verify", str(plan), *trust)
        assert ok.exit_code == 0 and "signed by 1 trusted key" in ok.output, ok.output
    with PlanStream(j) as a, PlanStream(p) as b:
        assert a.counts == b.counts
        assert list(a.targets()) == list(b.targets()) and list(a.images()) == list(b.images())
        assert list(a.kept()) == list(b.kept()) and list(a.problems()) == list(b.problems())
        assert a.body_digest != b.body_digest  # the Parquet plan signs its pin, not its items
    whole_j, whole_p = workflow.load_plan(j), workflow.load_plan(p)
    assert attrs.evolve(whole_j, signatures=()) == attrs.evolve(whole_p, signatures=())


def test_apply_and_rollback_are_the_same_and_the_state_keeps_the_body(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    j, p = both(demo_root, key, tmp_path / "plans")
    before = content_hashes(demo_root / "docker")
    after = {}
    for plan in (j, p):
        done = run("apply", str(plan), "--trust", f"{key}.pub", "--json")
        assert done.exit_code == 0, done.output
        apply_id = json.loads(done.stdout)["apply_id"]
        after[plan.name] = content_hashes(demo_root / "docker")
        kept = list(demo_root.glob(f"regplan-state/applies/{apply_id}/*"))
        assert ("plan.body.parquet" in {k.name for k in kept}) == (plan == p)
        back = run("rollback", apply_id, "--root", str(demo_root))
        assert back.exit_code == 0, back.output
        assert content_hashes(demo_root / "docker") == before
    assert after["j.plan.json"] == after["p.plan.json"] != before


def _fails(plan: Path, trust: Path, *needles: str) -> None:
    for args in (["verify", str(plan), "--trust", str(trust)], ["show", str(plan)]):
        r = run(*args)
        assert r.exit_code == 1, r.output
        assert r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
        assert all(n in r.output for n in needles), r.output


def test_a_tampered_body_fails_before_any_item_is_read(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    _, p = both(demo_root, key, tmp_path / "plans")
    parquet = tmp_path / "plans" / "p.plan.body.parquet"
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 1
    parquet.write_bytes(bytes(data))
    _fails(p, Path(f"{key}.pub"), "is not the one it pins")


def test_a_body_pinned_by_another_plan_is_refused(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    _, mine = both(demo_root, key, tmp_path / "mine")
    _, other = both(demo_root, key, tmp_path / "other", "team/app:v2")
    pub = Path(f"{key}.pub")
    theirs = tmp_path / "other" / "p.plan.body.parquet"
    (tmp_path / "mine" / "p.plan.body.parquet").write_bytes(theirs.read_bytes())
    _fails(mine, pub, "is not the one it pins")
    # and the other plan's pin in this plan's header: its signature no longer holds
    raw = json.loads(mine.read_text())
    raw["body"] = json.loads(other.read_text())["body"]
    mine.write_text(json.dumps(raw, indent=2))
    r = run("verify", str(mine), "--trust", str(pub))
    assert r.exit_code == 3, r.output


@pytest.mark.parametrize("what", ["missing", "symlink", "fifo", "elsewhere", "lists too"])
def test_a_body_that_is_not_a_plain_file_beside_the_plan_is_refused(
    demo_root: Path, key: Path, tmp_path: Path, what: str
) -> None:
    _, p = both(demo_root, key, tmp_path / "plans")
    parquet = tmp_path / "plans" / "p.plan.body.parquet"
    moved = tmp_path / "moved.parquet"
    parquet.rename(moved)
    raw = json.loads(p.read_text())
    if what == "symlink":
        parquet.symlink_to(moved)
    elif what == "fifo":
        os.mkfifo(parquet)
    elif what == "elsewhere":
        raw["body"]["file"] = "../moved.parquet"
    elif what == "lists too":
        parquet.write_bytes(moved.read_bytes())
        raw["targets"] = []
    p.write_text(json.dumps(raw, indent=2))
    _fails(p, Path(f"{key}.pub"), str(p) if what in ("elsewhere", "lists too") else "plan body")


def test_plan_body_option(demo_root: Path, key: Path, tmp_path: Path) -> None:
    args = ["plan", "--root", str(demo_root), "--key", str(key), "--image", "team/app:v1"]
    for choice, parquet in (("auto", False), ("json", False), ("parquet", True)):
        out = tmp_path / choice / "x.plan.json"
        r = run(*args, "-o", str(out), "--body", choice)
        assert r.exit_code == 0, r.output
        assert (out.parent / "x.plan.body.parquet").exists() == parquet
        assert ("body" in json.loads(out.read_text())) == parquet
        said = f"Its lists are in {out.parent / 'x.plan.body.parquet'}, pinned by the plan"
        assert (said in r.output) == parquet
        assert run("verify", str(out), "--trust", f"{key}.pub").exit_code == 0
    assert planbody.chosen("auto", planbody.AUTO_TARGETS + 1)
    assert not planbody.chosen("auto", planbody.AUTO_TARGETS)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    made: Store = STORES[request.param](tmp_path)
    return made


def test_every_store_keeps_the_body_with_the_plan(
    store: Store, demo_root: Path, key: Path, tmp_path: Path
) -> None:
    """What rollback reads back (applies.began) on a filesystem and on every bucket."""
    _, p = both(demo_root, key, tmp_path / "plans")
    record = ApplyRecord(
        seq=1,
        apply_id="a1",
        plan_id="x",
        state=State.APPLYING,
        root="r",
        started_at="2026-01-01T00:00:00Z",
        updated_at="2026-01-01T00:00:00Z",
        targets=0,
        bytes=0,
    )
    with store.lock("test", False), PlanStream(p, snapshot=True) as stream:
        applies.begin(store, stream, record)
        with applies.began(store, "a1") as back:
            assert back.body is not None and back.body_digest == stream.body_digest
            assert list(back.targets()) == list(stream.targets())
            assert list(back.images()) == list(stream.images())
        store.write(applies.plan_body("a1"), [b"not the body"])
        with pytest.raises(Exception, match="is not the one it pins"), applies.began(store, "a1"):
            pass


def test_an_approval_of_a_parquet_plan_counts_and_a_swapped_body_voids_it(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    made = run("keygen", str(tmp_path / "bob"), "--comment", "bob@review")
    assert made.exit_code == 0, made.output
    trust = tmp_path / "team.pub"
    trust.write_text(Path(f"{key}.pub").read_text() + (tmp_path / "bob.pub").read_text())
    _, p = both(demo_root, key, tmp_path / "plans")
    done = run("approve", str(p), "--key", str(tmp_path / "bob"), "--trust", str(trust))
    assert done.exit_code == 0, done.output
    two = ["verify", str(p), "--trust", str(trust), "--require-signatures", "2"]
    ok = run(*two)
    assert ok.exit_code == 0 and "signed by 2 trusted key" in ok.output, ok.output
    _, other = both(demo_root, key, tmp_path / "other", "team/app:v2")
    raw = json.loads(p.read_text())
    raw["body"] = json.loads(other.read_text())["body"]
    p.write_text(json.dumps(raw, indent=2))
    (tmp_path / "plans" / raw["body"]["file"]).write_bytes(
        (tmp_path / "other" / raw["body"]["file"]).read_bytes()
    )
    assert run(*two).exit_code == 3


def test_the_schema_describes_a_parquet_plan(demo_root: Path, key: Path, tmp_path: Path) -> None:
    schema = json.loads((Path(__file__).parents[1] / "plans" / "plan.schema.json").read_text())
    j, p = both(demo_root, key, tmp_path / "plans")
    jsonschema.validate(json.loads(j.read_text()), schema)
    raw = json.loads(p.read_text())
    jsonschema.validate(raw, schema)
    for bad in ({**raw, "targets": []}, {**raw, "body": {**raw["body"], "file": "../x"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_apply_and_rollback_on_s3_keep_the_body_in_the_bucket(
    demo_bucket: S3Storage, key: Path, tmp_path: Path
) -> None:
    """On moto, through the CLI: the body goes into the bucket's state with the plan,
    and rollback reads it back from there."""
    storage = demo_bucket
    before = objects(storage)
    p = tmp_path / "p.plan.json"
    made = run("plan", "--root", storage.root, "--key", str(key), "-o", str(p), "-q",
               "--untagged", "*", "--gc", "--body", "parquet")  # fmt: skip
    assert made.exit_code == 0, made.output
    done = run("apply", str(p), "--trust", f"{key}.pub", "--json", "--root", storage.root)
    assert done.exit_code == 0, done.output
    apply_id = json.loads(done.stdout)["apply_id"]
    state = objects(storage, f"regplan-state/applies/{apply_id}/")
    [(size, etag, _)] = [v for k, v in state.items() if k.endswith("/plan.body.parquet")]
    data = (tmp_path / "p.plan.body.parquet").read_bytes()
    assert (size, etag) == (len(data), hashlib.md5(data).hexdigest())  # noqa: S324 (S3's ETag)
    assert objects(storage) != before
    back = run("rollback", apply_id, "--root", storage.root, "-q")
    assert back.exit_code == 0, back.output
    assert objects(storage) == before


def test_a_snapshot_reads_the_body_it_checked(demo_root: Path, key: Path, tmp_path: Path) -> None:
    """With ``snapshot`` (verify, apply, approve) the body is read from a private copy:
    bytes written into the file afterwards change nothing; without it, the copy an
    apply keeps says the file changed instead of keeping other bytes."""
    _, p = both(demo_root, key, tmp_path / "plans")
    both(demo_root, key, tmp_path / "other", "team/app:v2")
    parquet = tmp_path / "plans" / "p.plan.body.parquet"
    theirs = (tmp_path / "other" / "p.plan.body.parquet").read_bytes()
    with PlanStream(p) as plain, PlanStream(p, snapshot=True) as snap:
        expected = list(snap.targets())
        with parquet.open("r+b") as f:  # in place: the same inode
            f.write(theirs)
            f.truncate()
        assert list(snap.targets()) == expected
        assert snap.body is not None and plain.body is not None
        assert b"".join(snap.body.copy()) != theirs
        with pytest.raises(PlanFormatError, match="changed while it was read"):
            b"".join(plain.body.copy())


def test_a_plan_with_a_parquet_body_is_signed_once(demo_root: Path, tmp_path: Path) -> None:
    """One signature whatever the body: a hardware key is touched once per plan."""
    made = run("keygen", str(tmp_path / "s"), "--ssh", "--comment", "alice@ops")
    assert made.exit_code == 0, made.output
    key, name = load_key(str(tmp_path / "s"), None)
    assert isinstance(key, SshKey)
    signed: list[bytes] = []

    def sign_data(data: bytes) -> bytes:
        signed.append(data)
        return key.sign_data(data)

    counting = attrs.evolve(key, sign_data=sign_data)
    for body in ("parquet", "json"):
        signed.clear()
        with workflow.make_plan(
            storage=FsStorage.locate(demo_root),
            selection=selection(("team/app:v1",), ("team/*",)),
            argv=["regplan", "plan"],
            key=counting,
            signer=name,
            now=datetime.now(UTC).replace(microsecond=0),
            body=body,
        ) as draft:
            workflow.write_plan(draft, tmp_path / f"{body}.plan.json", body=body)
        assert len(signed) == 1, body
