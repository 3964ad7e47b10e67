"""The mark and sweep's database (regplan.mark): digests as numbers, a memory limit
that spills instead of failing, and its folder gone after."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from regplan.cli import cli
from regplan.decide.planner import decide_spooled
from regplan.decide.selection import Resolved
from regplan.errors import SpoolError
from regplan.mark import tables
from regplan.mark.numbers import Numbering
from regplan.scan.digests import Sizes
from regplan.scan.inventory import Inventory, Repository
from regplan.scan.layout import Digest, blob_dir
from regplan.scan.manifests import Manifest, ManifestKind
from tests.helpers import unreferenced_blobs


def _swept(inventory: Inventory, memory: str | None = None) -> list[str]:
    spooled = decide_spooled(inventory, Resolved(gc=True), memory=memory)
    with contextlib.closing(spooled.targets):
        return [t.path for t in spooled.targets.targets()]


_digests = st.builds(
    lambda alg, h: Digest(f"{alg}:{h}"),
    st.sampled_from(["sha256", "sha512", "md5"]),
    st.text("0123456789abcdef", min_size=1, max_size=4),
)


@given(blobs=st.frozensets(_digests, max_size=10), asked=st.lists(_digests, max_size=20))
def test_digests_and_numbers_are_one_to_one(blobs: frozenset[Digest], asked: list[Digest]) -> None:
    """A blob's number is its place among the blobs, sorted; any other digest is
    numbered after them; equal digests share a number, and a number gives back the
    digest object the inventory holds."""
    sizes = Sizes(dict.fromkeys(blobs, 1))
    numbering = Numbering(sizes)
    numbers = {d: numbering.number(d) for d in [*asked, *blobs, *reversed(asked)]}
    assert len(set(numbers.values())) == len(numbers)
    for d, n in numbers.items():
        assert numbering.number(d) == n and numbering.digest(n) == d
        assert (n < len(blobs)) == (d in blobs)
    for i, d in enumerate(sorted(blobs)):
        assert numbers[d] == i and numbering.digest(i) is sizes.key(i)
    with pytest.raises(IndexError):
        numbering.digest(len(numbers))
    with pytest.raises(IndexError):
        numbering.digest(-1)


def test_a_revision_without_its_blob_still_holds_what_it_uses() -> None:
    """A revision whose manifest's blob is gone (a digest that names no blob, numbered
    after the blobs) is a holder by that digest."""
    layer = Digest(f"sha256:{'1' * 64}")
    gone = Digest(f"sha512:{'2' * 128}")
    inventory = attrs.evolve(
        unreferenced_blobs([layer]),
        repositories={"app": Repository(name="app", revisions=frozenset({gone}))},
        manifests={gone: Manifest(kind=ManifestKind.OCI_MANIFEST, blobs=(layer,))},
    )
    with tables.Mark(inventory) as mark:
        mark.decided(removed=(), layers_gone=(), whole=(), failed=(), touched=["app"])
        assert mark.held_named([layer]) == {layer: [("app", 0, gone)]}
        assert list(mark.unheld()) == []


@pytest.mark.parametrize(
    "digest",
    [f"sha256:{'ab' * 32}", f"sha512:{'cd' * 64}", f"sha384:{'0' * 32}", f"md5:{'e' * 28}"],
)
def test_a_digest_comes_back_from_its_number(digest: str) -> None:
    """Whatever its algorithm: a text of 32 bytes (md5:…) never reads back as a sha256
    digest."""
    with tables.Mark(unreferenced_blobs([Digest(digest)])) as mark:
        mark.decided(removed=(), layers_gone=(), whole=(), failed=(), touched=())
        assert list(mark.held_named(())) == []
        assert list(mark.unheld()) == [digest]


def test_digests_of_every_algorithm_are_swept_apart() -> None:
    """A sha256 digest and another algorithm's are never the same blob."""
    digests = [Digest(f"sha256:{n:064x}") for n in range(3)]
    digests.append(Digest(f"sha512:{'1' * 128}"))
    assert _swept(unreferenced_blobs(digests)) == sorted(blob_dir(d) for d in digests)


@pytest.mark.parametrize(
    ("text", "read"), [("512MiB", "512MiB"), ("2GB", "2GB"), (" 64 mib", "64mib")]
)
def test_memory_limits_are_sizes(text: str, read: str) -> None:
    assert tables.memory_limit(text) == read


@pytest.mark.parametrize("text", ["", "512", "0MiB", "lots", "1PB", "-1GB"])
def test_a_memory_limit_that_is_no_size_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        tables.memory_limit(text)


def test_a_sweep_past_its_memory_spills_and_decides_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a limit far below the machine's (DuckDB spills past it), the plan is the
    same; the database's folder is gone after."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    digests = [Digest(f"sha256:{n:064x}") for n in range(60_000)]
    inventory = unreferenced_blobs(digests)
    small = _swept(inventory, "12MiB")
    assert small == _swept(inventory) == sorted(blob_dir(d) for d in digests)
    assert not list(tmp_path.glob("regplan-mark-*"))


def test_plan_refuses_a_memory_limit_that_is_no_size(demo_root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", str(tmp_path / "k")]).exit_code == 0
    args = ["plan", "--root", str(demo_root), "--key", str(tmp_path / "k"), "--gc"]
    made = runner.invoke(cli, [*args, "--memory-limit", "lots"])
    assert made.exit_code == 64  # a usage error (README: Exit codes)
    assert "--memory-limit" in made.output
    assert "not a size" in made.output
    made = runner.invoke(cli, [*args, "--memory-limit", "64MiB", "-o", str(tmp_path / "p")])
    assert made.exit_code == 0, made.output


def test_the_default_memory_limit_is_sized_to_the_inventory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """64 MiB for the steps' joins, plus half of what the tables hold (the rest spills),
    never more than a quarter of the machine's memory."""
    inventory = unreferenced_blobs([Digest(f"sha256:{n:064x}") for n in range(64)])
    assert tables.cells(inventory) == 64
    assert tables.default_memory_limit() == "64MiB"
    monkeypatch.setattr(tables, "CELL", 1 << 20)  # a MiB a digest: the tables hold 64 MiB
    assert tables.default_memory_limit(inventory) == "96MiB"
    monkeypatch.setattr(tables, "CELL", 1 << 40)
    quarter = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    assert tables.default_memory_limit(inventory) == f"{max(64 << 20, quarter) >> 20}MiB"


@pytest.mark.parametrize("limit", [None, "64MiB"])
def test_a_step_out_of_memory_runs_again_under_the_machines_limit_unless_one_was_given(
    limit: str | None,
) -> None:
    """The default limit is an estimate: a step that runs out of memory under it runs
    again under a quarter of the machine's memory, with the same answer. A limit the
    user gave is kept: the step fails, one line, no traceback."""
    digests = [Digest(f"sha256:{n:064x}") for n in range(20_000)]
    with tables.Mark(unreferenced_blobs(digests), limit=limit) as mark:
        mark.decided(removed=(), layers_gone=(), whole=(), failed=(), touched=())
        mark._db.execute("SET memory_limit = '256KiB'")  # far below what the tables hold
        if limit is None:
            assert sorted(mark.unheld()) == sorted(digests)
        else:
            with pytest.raises(SpoolError, match="the mark and sweep failed: Out of Memory"):
                list(mark.unheld())


def test_a_manifest_many_repositories_hold_is_one_row_of_each() -> None:
    """The same revision in 200 repositories, each linking its one layer: every answer
    names it once per repository (a digest numbered once per row it first appeared in
    joined each row to each of its numbers: 200 x 200 rows)."""
    layer = Digest(f"sha256:{'1' * 64}")
    manifest = Digest(f"sha256:{'2' * 64}")
    names = [f"team/app{n}" for n in range(200)]
    inventory = attrs.evolve(
        unreferenced_blobs([layer, manifest]),
        repositories={
            n: Repository(name=n, revisions=frozenset({manifest}), layers=frozenset({layer}))
            for n in names
        },
        manifests={manifest: Manifest(kind=ManifestKind.OCI_MANIFEST, blobs=(layer,))},
    )
    with tables.Mark(inventory) as mark:
        mark.decided(removed=(), layers_gone=(), whole=(), failed=(), touched=names)
        needed = mark.needed_links([(n, layer) for n in names])
        assert needed == {(n, layer): [manifest] for n in names}
        assert mark.free_links() == []
        held = mark.held_named([layer])
        assert sorted(held[layer]) == sorted(
            [(n, 0, manifest) for n in names] + [(n, 2, None) for n in names]
        )
        assert list(mark.unheld()) == []
