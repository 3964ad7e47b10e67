"""SIGKILL during ``rollback --only`` (#32): the same ``rollback --only`` again finishes
(the image it names whole, the rest still in the quarantine, the apply partly rolled
back), and a full rollback afterwards leaves the tree byte for byte as before the apply.

The sample registry's plan removes team/app:v1, team/signed:v1 (with its signature and
attestation), old/repo:2020 and every untagged manifest, and prunes. Each REF is one
closure ``--only`` restores: a tag whose blobs stayed (team/app:v1); a repository with
untagged manifests whose blobs went with their pruned folders (team/app); a signed
image with what is attached to it (team/signed:v1).

On a filesystem a child forked from this warm process (tests/test_crash.py) runs the
partial rollback and is SIGKILLed at each rename (KillingDisk) and before and just after
each step it asks of the store (Steps); the parent runs the command again. Also: a
full rollback after a partial one killed at each rename; another ``--only`` after a
killed one; and a rollback killed half way through dropping the quarantined copy of
what was pushed again byte for byte (an audit hook in the child kills it at rmtree's
rmdir). On the memory bucket (each flavour) the kill is tests.buckets.Crashing at each
write request, before and after the store did it, with and without a push of the same
bytes since the apply.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from regplan import apply, workflow
from regplan.changes import only, transaction
from regplan.changes.records import State
from regplan.changes.transaction import RollbackResult
from regplan.demo.samples import build_demo
from regplan.errors import ApplyError
from regplan.plans import signing
from regplan.plans.plan import TargetKind
from regplan.scan.layout import tag_dir
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.fsstore import FsStore
from regplan.storage.objects.memory import FLAVOURS
from regplan.storage.seam import Store
from tests.buckets import BATCH, Counting, Crashing, InMemory, Killed, every, expire_lease, pushed
from tests.helpers import (
    KEY,
    NOW,
    broken_images,
    docker_hashes,
    images_on_disk,
    selection,
    unwhole,
    write_plan_file,
    write_pub,
)
from tests.test_crash import KillingDisk, Steps, assert_killed, in_child

REMOVED = ("team/app:v1", "team/signed:v1", "old/repo:2020")
SELECTION = selection(REMOVED, ("*",), prune=True)
IN_BUCKET = attrs.evolve(selection(REMOVED, ("*",)), gc=True)
"""A bucket has no folders to prune: its blobs go with --gc."""
ONLY = {"tag": "team/app:v1", "repository": "team/app", "signed": "team/signed:v1"}
"""REF as ``rollback --only`` takes it, by the kind of closure it restores."""
V2 = "docker/registry/v2"


class Partial:
    """The sample registry, its plan applied (``applied``), and for each REF one whole
    ``rollback --only REF`` of it: its renames, its steps, the tree it leaves."""

    def __init__(self, base: Path) -> None:
        self.base = base
        original = base / "original"
        build_demo(original)
        self.before = docker_hashes(original)
        self.tags, self.revisions = images_on_disk(original / V2)
        self.plan = base / "p.json"
        write_plan_file(original, SELECTION, self.plan)
        self.trusted = [signing.load_trusted(write_pub(KEY, base / "k.pub"))]
        self.applied = base / "applied"
        shutil.copytree(original, self.applied, symlinks=True)
        self.apply_id = apply.apply_plan(
            plan_path=self.plan, trusted=self.trusted, root=self.applied, required=1, now=NOW
        ).apply_id
        self.after = docker_hashes(self.applied)
        self.measured: dict[str, tuple[int, list[str], dict[str, str]]] = {}

    def copy(self, name: str) -> Path:
        dst = self.base / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.applied, dst, symlinks=True)
        return dst

    def partly(self, root: Path, ref: str, store: Store | None = None) -> RollbackResult:
        """``rollback --only ref`` over ``store`` (as apply.rollback wires it)."""
        storage = FsStorage.locate(root)
        store = store or FsStore(storage)
        choose = only.chooser(store, self.apply_id, lambda: location.read(storage).manifests)
        return transaction.rollback(store, self.apply_id, now=NOW, only=(ref,), choose=choose)

    def again(self, root: Path, ref: str = "") -> RollbackResult:
        """The command run again by the operator: ``rollback [--only ref]``."""
        refs = (ref,) if ref else ()
        return apply.rollback(
            storage=FsStorage.locate(root), apply_id=self.apply_id, now=NOW, only=refs
        )

    def measure(self, ref: str) -> tuple[int, list[str], dict[str, str]]:
        """(renames, steps, the tree after) of one whole ``rollback --only ref``."""
        if ref not in self.measured:
            root = self.copy(f"measure-{ref.replace('/', '-')}")
            counting, steps = KillingDisk(), Steps()
            result = self.partly(root, ref, steps.store(FsStore(FsStorage.locate(root), counting)))
            assert not result.whole and result.restored == counting.renames
            self.measured[ref] = (counting.renames, steps.done, docker_hashes(root))
            shutil.rmtree(root)
        return self.measured[ref]

    def state(self, root: Path) -> State:
        [record] = apply.records(FsStorage.locate(root))
        return record.state

    def whole(self, root: Path, ref: str) -> list[str]:
        """What the images ``ref`` names lack on disk (empty: each is whole): each tag
        (and what is attached to it) naming its manifest as before, each revision whole."""
        v2 = root / V2
        repo, _, tag = ref.partition(":")
        digests = {d for (r, t), (d, _) in self.tags.items() if (r, t) == (repo, tag)}
        attached = {f"sha256-{d.removeprefix('sha256:')}" for d in digests}
        out = []
        for (r, t), (digest, _) in self.tags.items():
            if r == repo and (not tag or t == tag or t.partition(".")[0] in attached):
                link = v2 / tag_dir(r, t) / "current/link"
                if not link.is_file() or link.read_text() != digest:
                    out.append(f"{r}:{t} does not name {digest}")
                digests.add(digest)
        if not tag:
            digests |= {d for r, d in self.revisions if r == repo}
        return out + [m for d in sorted(digests) for m in unwhole(v2, repo, d)]


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Partial]:
    """On a tmpfs where there is one (as tests/test_crash.py)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shm.stat().st_mode & 0o002:
        base = Path(tempfile.mkdtemp(prefix="regplan-partial-", dir=shm))
    else:
        base = tmp_path_factory.mktemp("partial")
    try:
        yield Partial(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def finishes(p: Partial, killed: Path, ref: str, where: object) -> None:
    """From a killed ``rollback --only ref``: a full rollback alone restores everything
    (on a copy); the same ``--only`` again leaves what a whole one leaves (that image
    whole, the rest still quarantined, partly rolled back), and the full rollback then
    the tree as before the apply."""
    assert p.state(killed) in (State.APPLIED, State.ROLLING_BACK, State.PARTLY_ROLLED_BACK)
    straight = p.base / f"{killed.name}-full"
    shutil.copytree(killed, straight, symlinks=True)
    assert p.again(straight).whole
    assert docker_hashes(straight) == p.before, where
    shutil.rmtree(straight)

    p.again(killed, ref)
    assert p.state(killed) == State.PARTLY_ROLLED_BACK, where
    assert p.whole(killed, ref) == [], where
    assert docker_hashes(killed) == p.measure(ref)[2], where
    rest = p.again(killed)
    assert rest.whole and rest.fingerprint_ok, (where, rest.changed)
    assert p.state(killed) == State.ROLLED_BACK
    assert docker_hashes(killed) == p.before, where
    shutil.rmtree(killed)


@pytest.mark.parametrize("ref", ONLY.values(), ids=ONLY.keys())
def test_a_whole_partial_rollback_restores_that_image_only(partial: Partial, ref: str) -> None:
    """The reference the kills are measured against: ``--only`` moves several targets
    back, the image is whole, and the tree is neither as applied nor as before."""
    renames, steps, tree = partial.measure(ref)
    assert renames >= 3 and {"write", "append", "move_back"} <= set(steps), (renames, steps)
    assert tree not in (partial.before, partial.after)
    assert partial.whole(partial.applied, ref) != []  # what the check sees as missing


@pytest.mark.parametrize("ref", ONLY.values(), ids=ONLY.keys())
def test_a_partial_rollback_killed_at_each_rename_finishes_by_running_it_again(
    partial: Partial, ref: str
) -> None:
    """Killed at every rename it makes (a target going back, into a pruned folder made
    again or not): the same ``--only`` again, then the full rollback."""
    renames, _, _ = partial.measure(ref)
    for at in range(1, renames + 1):
        root = partial.copy(f"rename-{at}")
        disk = KillingDisk(at)
        kill = functools.partial(partial.partly, root, ref, FsStore(FsStorage.locate(root), disk))
        assert_killed(in_child(kill))
        assert partial.state(root) == State.ROLLING_BACK
        finishes(partial, root, ref, ("rename", at))


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("ref", ONLY.values(), ids=ONLY.keys())
def test_a_partial_rollback_killed_at_each_step_finishes_by_running_it_again(
    partial: Partial, ref: str, after: bool
) -> None:
    """Killed before (or just after) each step it asks of the store: its record, its
    journal lines, each batch of moves back, its last record."""
    _, steps, _ = partial.measure(ref)
    for at in range(1, len(steps) + 1):
        root = partial.copy(f"step-{at}")
        store = Steps(at, after=after).store(FsStore(FsStorage.locate(root)))
        assert_killed(in_child(functools.partial(partial.partly, root, ref, store)))
        finishes(partial, root, ref, ("step", at, steps[at - 1], after))


def test_the_full_rollback_after_a_partial_one_killed_at_each_rename_finishes(
    partial: Partial,
) -> None:
    """After ``--only team/signed:v1``, the full rollback killed at each of its renames:
    run again, the tree is as before the apply."""
    ref = ONLY["signed"]
    done = partial.copy("partly")
    partial.again(done, ref)
    counting = KillingDisk()
    counted = partial.base / "counted"
    shutil.copytree(done, counted, symlinks=True)
    transaction.rollback(FsStore(FsStorage.locate(counted), counting), partial.apply_id, now=NOW)
    assert docker_hashes(counted) == partial.before
    assert counting.renames > 10
    for at in range(1, counting.renames + 1):
        root = partial.base / f"full-{at}"
        shutil.copytree(done, root, symlinks=True)
        store = FsStore(FsStorage.locate(root), KillingDisk(at))
        kill = functools.partial(transaction.rollback, store, partial.apply_id, now=NOW)
        assert_killed(in_child(kill))
        assert partial.state(root) == State.ROLLING_BACK
        partial.again(root)
        assert partial.state(root) == State.ROLLED_BACK
        assert docker_hashes(root) == partial.before, at
        shutil.rmtree(root)


def test_another_partial_rollback_after_a_killed_one_leaves_no_image_half_restored(
    partial: Partial,
) -> None:
    """``--only team/app:v1`` killed after its tag came back; then ``--only
    team/signed:v1``: it refuses until the first finishes, or it ends with every image
    the tree names whole."""
    root = partial.copy("other-only")
    store = FsStore(FsStorage.locate(root), KillingDisk(2))
    assert_killed(in_child(functools.partial(partial.partly, root, ONLY["tag"], store)))
    assert broken_images(root / V2) != []  # the tag is back, its manifest not yet
    try:
        partial.again(root, ONLY["signed"])
    except ApplyError:  # refusing until the interrupted one is finished is as good
        assert partial.state(root) == State.ROLLING_BACK
        return
    assert broken_images(root / V2) == []


PUSHED_AGAIN = (
    "blobs/sha256/17/1745e54e8a249887e276668bc12f45963a28c8a20d81db6db768d02121e665ac/data",
    "repositories/team/app/_layers/sha256/"
    "1745e54e8a249887e276668bc12f45963a28c8a20d81db6db768d02121e665ac/link",
)
"""A config blob of team/app's first untagged build and its layer link: what a push of
an image with that config writes again, byte for byte, after the apply removed them."""


def killed_in_a_drop(quarantine: str) -> Callable[[], None]:
    """In the child only (an audit hook cannot be removed): SIGKILL at the ``rmdir`` of
    the first folder under ``quarantine`` that ``shutil.rmtree`` removes, once its files
    are gone (a slot's copy dropped half way). Nothing is replaced: the hook watches the
    process's own calls, as strace would."""

    def arm() -> None:
        armed: list[object] = []

        def hook(event: str, args: tuple[object, ...]) -> None:
            if event == "shutil.rmtree" and quarantine in str(args[0]):
                armed.append(args[0])
            elif event == "os.rmdir" and armed:
                os.kill(os.getpid(), signal.SIGKILL)

        sys.addaudithook(hook)

    return arm


@pytest.mark.parametrize("ref", ["team/app", ""], ids=["only", "full"])
def test_a_rollback_killed_while_it_drops_a_copy_pushed_again_finishes(
    partial: Partial, ref: str
) -> None:
    """Layers pushed again byte for byte since the apply count as restored: their copies
    in the quarantine go (rmtree). Killed half way through removing one, the same
    rollback (``--only team/app``, or full) again finishes, and a full one leaves the
    tree as before the apply."""
    root = partial.copy(f"drop-{ref or 'full'}")
    v2, was = root / V2, partial.base / "original" / V2
    for rel in PUSHED_AGAIN:
        (v2 / rel).parent.mkdir(parents=True, exist_ok=True)
        (v2 / rel).write_bytes((was / rel).read_bytes())
    quarantine = str(root / "regplan-state" / "quarantine" / partial.apply_id)
    arm = killed_in_a_drop(quarantine)
    assert_killed(in_child(lambda: (arm(), partial.again(root, ref))))
    assert partial.state(root) == State.ROLLING_BACK
    slots = [Path(quarantine) / n for n in os.listdir(quarantine) if n.isdigit()]
    assert [s for s in slots if s.is_dir() and not any(s.iterdir())] != []  # the half drop
    partial.again(root, ref)
    if ref:
        assert partial.whole(root, ref) == []
        partial.again(root)
    assert partial.state(root) == State.ROLLED_BACK
    assert docker_hashes(root) == partial.before


def test_a_tag_pushed_again_byte_for_byte_is_not_superseded_after_a_kill(
    partial: Partial,
) -> None:
    """team/app:v1 pushed again byte for byte counts as restored (``same``), and the
    quarantine empties; killed half way through dropping its copy, the same rollback
    again says the same."""
    root = partial.copy("drop-tag")
    v2, was = root / V2, partial.base / "original" / V2
    tag = tag_dir("team/app", "v1")
    for f in sorted((was / tag).rglob("*")):
        if f.is_file():
            (v2 / f.relative_to(was)).parent.mkdir(parents=True, exist_ok=True)
            (v2 / f.relative_to(was)).write_bytes(f.read_bytes())
    quarantine = root / "regplan-state" / "quarantine" / partial.apply_id
    arm = killed_in_a_drop(str(quarantine))
    assert_killed(in_child(lambda: (arm(), partial.again(root))))
    assert partial.state(root) == State.ROLLING_BACK
    again = partial.again(root)
    assert docker_hashes(root) == partial.before
    assert again.superseded == ()
    assert not quarantine.exists()


# -- the memory bucket ----------------------------------------------------------


class InBucket:
    """The sample registry in a memory bucket, and its plan; applied anew by ``apply``."""

    def __init__(self, flavour: str, base: Path) -> None:
        self.tree = base / "tree"
        build_demo(self.tree)
        self.reg = InMemory.of(flavour, base, self.tree)
        self.reg.clock.advance(60)
        self.cache = base / "scan-cache"
        self.plan = self.reg.plan(IN_BUCKET, base / "p.json")
        self.before = self.reg.objects()
        self.pushed = pushed(self.reg.storage, self.cache)
        self.apply_id = ""

    def apply(self, *, push_again: bool = False) -> None:
        """Apply the plan; with ``push_again``, then write the blobs of team/signed:v1
        (its manifest, config and layer) and its layer links again, byte for byte, as a
        push of them would."""
        self.reg.clock.advance(1)
        self.apply_id = self.reg.apply(self.plan).apply_id
        if not push_again:
            return
        v2, written = self.tree / V2, 0
        for t in workflow.load_plan(self.plan).targets:
            if t.refs == (ONLY["signed"],) and t.kind in (TargetKind.BLOB, TargetKind.LAYER_LINK):
                for f in sorted((v2 / t.path).rglob("*")):
                    if f.is_file():
                        key = self.reg.storage.key(f.relative_to(self.tree).as_posix())
                        self.reg.bucket.put(key, f.read_bytes())
                        written += 1
        assert written == 5

    def rollback(
        self, refs: tuple[str, ...] = (), via: Crashing | Counting | None = None
    ) -> RollbackResult:
        self.reg.clock.advance(1)
        storage = self.reg.storage if via is None else self.reg.through(via)
        return apply.rollback(
            storage=storage, apply_id=self.apply_id, now=self.reg.clock.now(), only=refs,
            break_lock=True,
        )  # fmt: skip

    def state(self) -> State:
        return self.reg.history()[-1].state

    def restored(self) -> bool:
        """Every object and every tag's push time as before the apply, no quarantine."""
        return (
            self.reg.objects() == self.before
            and pushed(self.reg.storage, self.cache) == self.pushed
            and not self.reg.objects("regplan-state/quarantine/")
        )


@pytest.mark.parametrize("again", [False, True], ids=["", "pushed-again"])
@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_a_partial_rollback_killed_at_any_request_finishes_in_a_bucket(
    flavour: str, again: bool, tmp_path: Path
) -> None:
    """``--only team/signed:v1`` killed at each write request (each copy back, each
    delete request, each put of its record and journal, the lock), before and after the
    store did it; a delete request holds as many keys as the store's client sends (GCS:
    one): the same ``--only`` again restores what a whole one does, and the full
    rollback then every object and every tag's push time as before the apply. Also with
    the image's blobs and layer links pushed again byte for byte since the apply."""
    ref = (ONLY["signed"],)
    b = InBucket(flavour, tmp_path)
    b.apply(push_again=again)
    counting = Counting(b.reg.bucket, batch=BATCH[flavour])
    b.rollback(ref, counting)
    partly = b.reg.objects()
    assert b.state() == State.PARTLY_ROLLED_BACK and partly != b.before
    counts = counting.writes()
    assert counts["copy"] >= 10, counts
    assert b.rollback().whole and b.restored()
    for request in every(counts, lambda kind, total: total > 20):
        for after in (False, True):
            where = (request, after)
            b.apply(push_again=again)
            with pytest.raises(Killed):
                b.rollback(
                    ref, Crashing(b.reg.bucket, at=request, after=after, batch=BATCH[flavour])
                )
            expire_lease(b.reg.bucket)
            b.rollback(ref)
            assert b.state() == State.PARTLY_ROLLED_BACK, where
            assert b.reg.objects() == partly, where
            assert b.rollback().whole, where
            assert b.state() == State.ROLLED_BACK, where
            assert b.restored(), where
