"""The spool: what the planner decides past memory reads back as if held whole."""

from __future__ import annotations

import contextlib
import tempfile
import tracemalloc
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from regplan import workflow
from regplan.cli import cli
from regplan.decide.planner import decide_spooled
from regplan.decide.selection import Resolved
from regplan.errors import SpoolError
from regplan.plans import codec, spool
from regplan.plans.plan import Target, TargetKind, summarize, tally
from regplan.plans.spool import Sorted, TargetSpool
from regplan.scan.inventory import Inventory
from regplan.scan.layout import Digest, part_of
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import KEY, NOW, pem, selection, unreferenced_blobs, write_pub

records = st.lists(
    st.tuples(st.integers(0, 7), st.text(max_size=8), st.tuples(st.text(max_size=3))),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(records, records, st.integers(1, 7))
def test_sorted_reads_back_what_sorted_would(
    first: list[tuple[object, ...]], then: list[tuple[object, ...]], run: int
) -> None:
    s = Sorted(run)
    for r in first:
        s.add(r)
    assert list(s) == sorted(first)
    assert list(s) == sorted(first)  # any number of passes
    for r in then:  # and more added after a pass
        s.add(r)
    assert list(s) == sorted(first + then)
    assert s.count == len(first) + len(then)
    s.close()


def _target(path: str, reason: str = "r", kind: TargetKind = TargetKind.BLOB) -> Target:
    return Target(path=path, kind=kind, reason=reason, refs=("a@b",), bytes=len(path))


def blob(n: int) -> str:
    hexa = f"{n:064x}"
    return f"blobs/sha256/{hexa[:2]}/{hexa}"


def test_the_last_decision_of_a_path_holds_and_items_are_as_the_codec_writes_them() -> None:
    s = TargetSpool(run=2)
    tag = "repositories/team/app/_manifests/tags/v1"
    s.add(_target(blob(2)))
    s.add(_target(tag, kind=TargetKind.TAG))
    s.add(_target(blob(1), "first"))
    s.add(_target(blob(1), "second"))
    targets = list(s.targets())
    assert [(t.path, t.reason) for t in targets] == [
        (tag, "r"),  # phase first: tags go before blobs
        (blob(1), "second"),
        (blob(2), "r"),
    ]
    assert list(s.raw()) == list(codec.unstructure_items(targets))
    assert list(s.plan_paths()) == [t.path for t in targets]
    assert tally(s.kinds_and_bytes()) == summarize(targets)  # the later decision's bytes
    paths = list(s.paths())
    assert paths == sorted(paths, key=lambda p: (part_of(p), p))
    s.close()


def _plan_bytes(root: Path, out: Path) -> bytes:
    sel = attrs.evolve(selection((), ("*",), prune=True), gc=True)
    with workflow.make_plan(
        storage=FsStorage.locate(root), selection=sel, argv=["t"], key=KEY, signer="t", now=NOW
    ) as draft:
        assert draft.counts["targets"] > 10
        workflow.write_plan(draft, out)
    return out.read_bytes()


def test_a_plan_spooled_to_disk_is_byte_for_byte_the_plan_held_in_memory(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = _plan_bytes(demo_root, tmp_path / "held.json")
    monkeypatch.setattr(spool, "RUN", 3)  # every third target spills a run to disk
    assert _plan_bytes(demo_root, tmp_path / "spooled.json") == held
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    with pytest.raises(SpoolError):  # it did spill: without a TMPDIR it cannot
        _plan_bytes(demo_root, tmp_path / "never.json")


def test_no_room_for_the_spool_is_one_line_and_no_plan(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "RUN", 2)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    out = tmp_path / "plans"
    key = tmp_path / "k"
    key.write_bytes(pem(KEY))
    write_pub(KEY, tmp_path / "k.pub")
    args = ["plan", "--root", str(demo_root), "--untagged", "*", "--gc", "--key", str(key)]
    result = CliRunner().invoke(cli, [*args, "-o", str(out / "p.json")])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: cannot keep the plan's targets in ")
    assert "No such file or directory (set TMPDIR to a folder with room)" in lines[-1]
    assert not out.exists() or list(out.iterdir()) == []


def _sweep_peak(inventory: Inventory) -> tuple[int, int]:
    """(targets, bytes the sweep allocated at its peak beyond what it started with)."""
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        spooled = decide_spooled(inventory, Resolved(gc=True))
        peak = tracemalloc.get_traced_memory()[1] - start
    finally:
        tracemalloc.stop()
    with contextlib.closing(spooled.targets):
        return sum(1 for _ in spooled.targets.targets()), peak


def test_the_sweep_does_not_hold_its_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = unreferenced_blobs([Digest(f"sha256:{n:064x}") for n in range(20_000)])
    monkeypatch.setattr(spool, "RUN", 10**9)  # every target held until the end
    held, held_peak = _sweep_peak(inventory)
    monkeypatch.setattr(spool, "RUN", 256)
    spooled, spooled_peak = _sweep_peak(inventory)
    assert held == spooled == 20_000
    # held, each target costs some 700 bytes at the peak (14 MB here); spooled, what
    # remains is the sweep's own per-blob work (1.4 MB) and one run being sorted
    assert spooled_peak < held_peak / 4, (held_peak, spooled_peak)
    assert held_peak - spooled_peak > 20_000 * 400, (held_peak, spooled_peak)
