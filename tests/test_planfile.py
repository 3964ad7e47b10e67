"""The streaming plan reader: the same plan as read whole, in flat memory, and the same
one-line errors for a bad file."""

from __future__ import annotations

import itertools
import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from regplan import workflow
from regplan.errors import PlanFormatError, SignatureError
from regplan.plans import approvals, codec, signing
from regplan.plans.plan import Kept, Plan, PlanProblem, Target, TargetKind, summarize
from regplan.plans.planfile import PlanStream
from regplan.scan.inventory import ProblemCode
from regplan.views import render, report, ticket, why
from regplan.views.overview import overview
from tests.helpers import KEY, NOW, OTHER_KEY, make_plan, selection, sign_raw, write_pub


@pytest.fixture
def plan(demo_root: Path) -> Plan:
    made = make_plan(demo_root, selection(("team/app:v1", "old/repo"), untagged=("team/*",)))
    return attrs.evolve(
        made,
        problems=(
            PlanProblem(path="repositories/x/_layers", code=ProblemCode.UNREADABLE, message="m"),
        ),
    )


def write(plan: Plan, path: Path) -> Path:
    workflow.write_plan(plan, path)
    return path


def big_plan(plan: Plan, n: int) -> Plan:
    """``n`` layer links in 10 repositories, n // 10 kept entries (made up: no image
    records, so ``why`` answers from the targets as for plans made before records)."""
    targets = tuple(
        Target(
            path=f"repositories/team/svc{i % 10}/_layers/sha256/{i:064x}",
            kind=TargetKind.LAYER_LINK,
            reason="unreferenced layer link",
            refs=(f"team/svc{i % 10}",),
            bytes=100 + i,
        )
        for i in range(n)
    )
    kept = tuple(Kept(path=f"blobs/sha256/ab/{i:064x}", reason="shared") for i in range(n // 10))
    return attrs.evolve(plan, targets=targets, kept=kept, summary=summarize(targets), images=())


def test_stream_reads_the_plan_as_read_whole(plan: Plan, tmp_path: Path) -> None:
    path = write(plan, tmp_path / "p.json")
    whole = workflow.load_plan(path)
    with PlanStream(path) as s:
        assert s.header == attrs.evolve(whole, targets=(), kept=(), problems=(), images=())
        assert tuple(s.targets()) == whole.targets
        assert tuple(s.kept()) == whole.kept
        assert tuple(s.problems()) == whole.problems
        assert tuple(s.images()) == whole.images
        assert s.counts == {
            "targets": len(whole.targets),
            "kept": len(whole.kept),
            "problems": 1,
            "images": len(whole.images),
        }
        assert render.text(s, targets=True) == render.text(whole, targets=True)
        assert ticket.markdown(s) == ticket.markdown(whole)
        assert report.html(s) == report.html(whole)
        for ref in ("team/app:v1", "old/repo", "sha256:" + "0" * 64):
            assert why.why(s, ref) == why.why(whole, ref)


def test_passes_can_interleave_on_a_large_file(plan: Plan, tmp_path: Path) -> None:
    """Each pass reads with a position of its own (the file is many read buffers long)."""
    big = big_plan(plan, 20_000)
    path = write(big, tmp_path / "big.json")
    assert path.stat().st_size > 4 << 20
    with PlanStream(path) as s:
        pairs = list(zip(s.targets(), s.kept(), strict=False))
        assert pairs == list(zip(big.targets, big.kept, strict=False))
        text = "".join(
            codec.stream_pretty_chunks(
                s.header,
                {
                    "targets": s.targets(),
                    "kept": s.kept(),
                    "problems": s.problems(),
                    "images": s.images(),
                },
            )
        )
    assert text.encode() == path.read_bytes()


def test_a_file_renamed_over_the_plan_is_not_mixed_in(plan: Plan, tmp_path: Path) -> None:
    path = write(plan, tmp_path / "p.json")
    with PlanStream(path) as s:
        other = write(attrs.evolve(plan, targets=plan.targets[:1]), tmp_path / "other.json")
        other.replace(path)
        assert tuple(s.targets()) == plan.targets


def test_summaries_read_in_flat_memory(plan: Plan, tmp_path: Path) -> None:
    """Summarizing 6x the targets takes about the same memory: the targets are never held
    together (read whole, they would take some 150 MiB at the larger size)."""
    peaks = []
    for n in (4_000, 24_000):
        path = write(big_plan(plan, n), tmp_path / f"{n}.json")
        tracemalloc.start()
        with PlanStream(path) as s:
            ov = overview(s)
            found = why.why(s, "team/svc3")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert ov.by_repository[0][1] == n // 10
        assert len(found.targets) == n // 10  # refs name the repository: every link is caused
    small, large = peaks
    assert large < small * 1.5 + (2 << 20), peaks


def test_what_why_holds_grows_with_its_answer_only(plan: Plan, tmp_path: Path) -> None:
    path = write(big_plan(plan, 5_000), tmp_path / "p.json")
    with PlanStream(path) as s:
        assert why.why(s, "team/none:v1").verdict is why.Verdict.UNTOUCHED


def raw(plan: Plan) -> str:
    return codec.dumps(plan).decode()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t[:-3], "not JSON"),
        (lambda t: t.rstrip()[:-1] + ', "x": [}', "not JSON"),
        (lambda t: "[" + t + "]", "not a regplan plan"),
        (lambda t: t.replace('"version": 1', '"version": 2'), "version 2 is not supported"),
        (lambda t: t.replace('"kept": [', '"targets": [], "kept": ['), "'targets' appears twice"),
        (lambda t: t.replace('"problems": [', '"problems": {"a": [', 1), "problems must be a list"),
        (
            lambda t: t.replace("repositories/team/app/_manifests/tags/v1", "../../etc"),
            "is not under blobs/ or repositories/ @ $.targets[1]",
        ),
        (lambda t: t.replace('"reason":', '"why":', 1), "invalid plan: "),
    ],
)
def test_a_bad_file_is_one_line(plan: Plan, tmp_path: Path, edit: object, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(edit(raw(plan)))  # type: ignore[operator]
    with pytest.raises(PlanFormatError) as e, PlanStream(path) as s:
        list(s.targets())
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_lists_must_be_lists(plan: Plan, tmp_path: Path) -> None:
    doc = json.loads(raw(plan))
    doc["targets"] = {"path": "blobs/sha256/ab"}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(PlanFormatError, match="targets must be a list"):
        PlanStream(path)


def test_a_file_nested_100000_deep_is_refused_in_a_few_mib(tmp_path: Path) -> None:
    """ijson's prefixes grow with the depth (gigabytes at 100,000): the first pass counts
    the depth itself and stops at MAX_DEPTH."""
    deep = tmp_path / "deep.json"
    deep.write_text('{"format": "regplan.plan", "version": 1, "x": ' + "[" * 100_000)
    tracemalloc.start()
    with pytest.raises(PlanFormatError, match="nested too deeply"):
        PlanStream(deep)
    assert tracemalloc.get_traced_memory()[1] < 16 << 20
    tracemalloc.stop()


def test_a_fifo_in_the_state_folder_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    with pytest.raises(PlanFormatError, match="not a regular file"):
        PlanStream(fifo, follow=False)
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    with pytest.raises(PlanFormatError, match="cannot read plan"):
        PlanStream(link, follow=False)


def test_lists_are_read_lazily(plan: Plan, tmp_path: Path) -> None:
    path = write(big_plan(plan, 3_000), tmp_path / "p.json")
    with PlanStream(path) as s:
        first = list(itertools.islice(s.targets(), 2))
    assert [t.path for t in first] == [
        f"repositories/team/svc{i}/_layers/sha256/{i:064x}" for i in range(2)
    ]


def test_stream_signature_covers_what_the_whole_file_does(plan: Plan, tmp_path: Path) -> None:
    """The body digest from the stream is the one of the plan read whole: for a plan as
    regplan writes it, one that leaves out its empty lists, and edited ones."""
    keys = [
        signing.TrustedKey(
            keyid=signing.keyid_of(KEY.public_key()), key=KEY.public_key(), source="k"
        )
    ]
    doc = sign_raw(json.loads(raw(plan)))
    slim = sign_raw({k: v for k, v in json.loads(raw(plan)).items() if k != "problems"})
    for n, d in enumerate((doc, slim)):
        path = tmp_path / f"{n}.json"
        path.write_text(json.dumps(d, indent=1))
        with PlanStream(path) as s:
            assert signing.verify_stream(s, keys)[1] == signing.verify(d, keys)
            assert b"".join(s.body_chunks()) == b"".join(codec.raw_body_chunks(d))
    edits: list[Callable[[dict[str, Any]], None]] = [
        lambda d: d["targets"][-1].update(reason="edited"),
        lambda d: d["targets"][0].update(bytes=1.5),
        lambda d: d["kept"].append({"path": "blobs/x", "reason": "r", "refs": []}),
        lambda d: d.update(root="/elsewhere"),
    ]
    for edit in edits:
        edited = json.loads(json.dumps(doc))
        edit(edited)
        path = tmp_path / "edited.json"
        path.write_text(json.dumps(edited))
        with PlanStream(path) as s, pytest.raises(SignatureError, match="changed after"):
            signing.verify_stream(s, keys)


def test_approve_of_a_plan_with_a_bad_item_leaves_the_file_as_it_was(
    plan: Plan, tmp_path: Path
) -> None:
    doc = json.loads(raw(plan))
    doc["targets"][-1]["path"] = "blobs/../../etc"
    path = tmp_path / "plans" / "p.json"
    path.parent.mkdir()
    path.write_text(json.dumps(sign_raw(doc)))
    before = path.read_bytes()
    with pytest.raises(PlanFormatError, match=r"'\.' or '\.\.' component @ \$\.targets\["):
        trusted = [signing.load_trusted(write_pub(KEY, tmp_path / "k.pub"))]
        approvals.approve(path, key=OTHER_KEY, signer="r", now=NOW, trusted=trusted)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["p.json"]  # and no approval beside it


def test_a_snapshot_reads_what_was_verified_whatever_is_written_later(
    plan: Plan, tmp_path: Path
) -> None:
    """verify, apply and approve read a private copy: writing into the plan file after
    the signature check changes nothing they read."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps(sign_raw(json.loads(raw(plan)))))
    before = path.read_bytes()
    keys = [
        signing.TrustedKey(
            keyid=signing.keyid_of(KEY.public_key()), key=KEY.public_key(), source="k"
        )
    ]
    with PlanStream(path, snapshot=True) as s:
        signing.verify_stream(s, keys)
        other = raw(attrs.evolve(plan, targets=plan.targets[:1]))
        with path.open("r+") as f:  # in place: same inode, same descriptor's view
            f.write(other)
            f.truncate()
        assert tuple(s.targets()) == plan.targets
        assert b"".join(s.copy()) == before
    with PlanStream(path) as s:
        assert len(tuple(s.targets())) == 1


def test_a_fifo_given_as_the_plan_hangs_nothing(tmp_path: Path) -> None:
    """``show FIFO`` (or any command reading a plan) never waits on a writer: one line,
    exit 1 (#33)."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    r = subprocess.run(
        [sys.executable, "-m", "regplan", "show", str(fifo)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [f"Error: cannot read plan {fifo}: not a regular file"]
