"""The storage seam's primitives, the same on every store (a filesystem, and the memory
bucket in each object store's flavour): records written, replaced and read back; a
journal appended and read back, and checked the same way everywhere (a line regplan
never writes is refused as tampering, a line a crash tore at the end is ignored);
and the stages' layering (storage imports nothing above it)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from regplan.changes import journal
from regplan.demo.samples import build_demo
from regplan.errors import ApplyError
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.fsstore import FsStore
from regplan.storage.objects.memory import FLAVOURS, MemoryBucket
from regplan.storage.objects.objstore import BucketStore
from regplan.storage.seam import Folder, Store

ROOT = Path(__file__).resolve().parent.parent / "regplan"


def _fs(tmp_path: Path) -> Store:
    build_demo(tmp_path / "registry")
    return FsStore(FsStorage.locate(tmp_path / "registry"))


def _memory(flavour: str) -> Callable[[Path], Store]:
    def make(_: Path) -> Store:
        return BucketStore(MemoryBucket(flavour).storage)

    return make


STORES = {"filesystem": _fs, **{name: _memory(name) for name in sorted(FLAVOURS)}}


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return STORES[request.param](tmp_path)


def test_records_are_written_replaced_and_read(store: Store) -> None:
    with store.lock("test", False):
        store.write("applies/a1/state.json", [b"one"])
        store.write("applies/a1/state.json", [b"two", b"!"])
        store.write("applies/a2/plan.json", [b"plan"], new=True)
        with pytest.raises(ApplyError):
            store.write("applies/a2/plan.json", [b"again"], new=True)
        assert store.read("applies/a1/state.json", 1 << 20) == b"two!"
        assert store.read("applies/a1/state.json", 2) == b"tw"
        with store.reader("applies/a2/plan.json") as f:
            assert f.read() == b"plan"
        assert store.names("applies/") == ["a1", "a2"]
        with pytest.raises(FileNotFoundError):
            store.read("applies/a3/state.json", 10)


def test_the_journal_reads_back_in_order_on_every_store(store: Store) -> None:
    name = journal.name("a1")
    folders = [Folder("repositories/x/_uploads", 0o755, 0, 0)]
    with store.lock("test", False):
        store.append(name, journal.line("move", **{"from": 0, "to": 2}))
        store.append(name, journal.line("moved", to=2))
        store.append(name, journal.removed(folders))
        read = journal.read(store, "a1")
    assert [r.op for r in read] == ["move", "moved", "rmdir"]
    assert journal.pruned(read) == folders


@pytest.mark.parametrize(
    "planted",
    [
        b'{"op": "rmdir", "path": "../../etc", "mode": 493, "uid": 0, "gid": 0}\n',
        b'{"op": "rmdir", "path": "/etc", "mode": 493, "uid": 0, "gid": 0}\n',
        b'{"op": "move", "from": 0}\n',
        b'{"op": "chmod", "path": "x"}\n',
        b"not json\n",
    ],
)
def test_a_tampered_journal_is_refused_on_every_store(store: Store, planted: bytes) -> None:
    """A line regplan never writes, anywhere but last: refused, naming the line."""
    name = journal.name("a1")
    with store.lock("test", False):
        store.append(name, journal.line("move", **{"from": 0, "to": 2}))
        store.append(name, planted)
        store.append(name, journal.line("moved", to=2))
        with pytest.raises(ApplyError, match=r"line 2 .*tampered with"):
            journal.read(store, "a1")


def test_a_torn_last_line_is_a_crash_not_tampering(store: Store) -> None:
    name = journal.name("a1")
    with store.lock("test", False):
        store.append(name, journal.line("move", **{"from": 0, "to": 2}))
        store.append(name, b'{"op": "moved", "t')
        assert [r.op for r in journal.read(store, "a1")] == ["move"]


def _imports(path: Path) -> set[str]:
    """Every regplan module a file imports, lazy imports included."""
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("regplan")}


BELOW = {
    "regplan.storage": ("regplan.changes", "regplan.plans", "regplan.decide", "regplan.views"),
    "regplan.scan": ("regplan.decide", "regplan.changes", "regplan.plans", "regplan.storage"),
    "regplan.decide": ("regplan.changes", "regplan.storage", "regplan.views", "regplan.cli"),
    "regplan.plans": ("regplan.changes", "regplan.storage", "regplan.views", "regplan.cli"),
}
"""Each stage, and the stages it never imports (DESIGN.md: data flows one way)."""
ABOVE_ALL = ("regplan.cli", "regplan.workflow", "regplan.apply")


@pytest.mark.parametrize("stage", sorted(BELOW))
def test_no_import_runs_up_a_stage(stage: str) -> None:
    """The seam is low: storage imports nothing of the transaction or the plan; no stage
    imports one after it, nor the commands."""
    folder = ROOT / stage.removeprefix("regplan.").replace(".", "/")
    upward = sorted(
        f"{path.relative_to(ROOT.parent)} imports {module}"
        for path in folder.rglob("*.py")
        for module in _imports(path)
        if module.startswith(BELOW[stage] + ABOVE_ALL)
    )
    assert upward == []


def test_location_is_the_one_place_that_knows_the_kinds() -> None:
    """Nothing above the storage asks which kind of storage it holds."""
    knowing = sorted(
        str(path.relative_to(ROOT.parent))
        for path in ROOT.rglob("*.py")
        if not path.is_relative_to(ROOT / "storage")
        and {"regplan.storage.fs.fsstorage", "regplan.storage.objects.bucket"} & _imports(path)
        and "isinstance" in path.read_text()
    )
    assert knowing == [], knowing
