"""apply, rollback, purge, history and approve on real trees in tmp_path."""

from __future__ import annotations

import errno
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO

import attrs
import pytest

from regplan import apply, workflow
from regplan.changes import transaction
from regplan.changes.records import State
from regplan.errors import ApplyError, LockHeldError, SignatureError, StalePlanError
from regplan.plans import approvals, signing
from regplan.plans.plan import TargetKind
from regplan.storage import location
from regplan.storage.fs.fslock import StorageLock
from regplan.storage.fs.fsops import real_dir
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import (
    KEY,
    NOW,
    OTHER_KEY,
    FaultyDisk,
    content_hashes,
    docker_hashes,
    forked,
    on_disk,
    selection,
    tmpfs,
    write_plan_file,
    write_pub,
)

SEL = selection(("team/app:v1", "old/repo"), ("*",), prune=True)


@pytest.fixture
def trusted(tmp_path: Path) -> list[signing.TrustedKey]:
    return [signing.load_trusted(write_pub(KEY, tmp_path / "planner.pub"))]


@pytest.fixture
def plan_path(demo_root: Path, tmp_path: Path) -> Path:
    path = tmp_path / "p.json"
    write_plan_file(demo_root, SEL, path)
    return path


def run_apply(
    plan_path: Path,
    trusted: list[signing.TrustedKey],
    root: Path | None = None,
    required: int = 1,
    *,
    exact: bool = False,
) -> apply.ApplyResult:
    return apply.apply_plan(
        plan_path=plan_path, trusted=trusted, root=root, required=required, now=NOW, exact=exact
    )


def quarantine_of(result: apply.ApplyResult) -> Path:
    """A filesystem apply's quarantine folder."""
    return Path(result.quarantine)


def test_apply_then_rollback_is_byte_identical(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    original = docker_hashes(demo_root)
    plan = workflow.load_plan(plan_path)
    result = run_apply(plan_path, trusted)
    assert result.fingerprint_ok
    assert result.moved == len(plan.targets)
    storage = FsStorage.locate(demo_root)
    assert location.digest(storage).digest == plan.fingerprint.after
    index = (quarantine_of(result) / "INDEX.tsv").read_text().splitlines()[1:]
    slots = {path: slot for slot, _, path in (line.split("\t") for line in index)}
    for t in plan.targets:
        assert not (storage.v2 / t.path).exists()
        if t.kind.value != "empty_dir":
            assert (quarantine_of(result) / slots[t.path]).is_dir()
    [record] = apply.records(storage)
    assert record.state == State.APPLIED
    assert record.bytes == plan.summary.bytes
    kept_copy = demo_root / "regplan-state" / "applies" / result.apply_id / "plan.json"
    assert kept_copy.read_bytes() == plan_path.read_bytes()

    back = apply.rollback(storage=storage, apply_id=result.apply_id, now=NOW)
    assert back.fingerprint_ok
    assert docker_hashes(demo_root) == original
    assert not quarantine_of(result).exists()
    assert apply.records(storage)[0].state == State.ROLLED_BACK


def test_verify_and_rollback_report_progress(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    """What the CLI draws on stderr: verify counts its walk; rollback counts the
    moves back up to all of them, then its final walk."""
    walked: list[int] = []
    workflow.load_verified(
        plan_path, trusted=trusted, root=None, progress=lambda n, _: walked.append(n)
    )
    assert walked and walked == sorted(walked)
    storage = FsStorage.locate(demo_root)
    assert walked[-1] == len(list(storage.v2.rglob("*")))
    result = run_apply(plan_path, trusted)
    moved: list[tuple[int, int]] = []
    walked.clear()
    back = apply.rollback(
        storage=storage,
        apply_id=result.apply_id,
        now=NOW,
        progress=lambda done, total: moved.append((done, total)),
        scan_progress=lambda n, _: walked.append(n),
    )
    assert back.restored > 0 and moved[-1] == (back.restored, back.restored)
    assert walked[-1] == len(list(storage.v2.rglob("*")))


def test_directory_modes_are_restored(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    storage = FsStorage.locate(demo_root)
    pruned = storage.v2 / "repositories/old/repo/_uploads"
    pruned.chmod(0o700)
    write_plan_file(demo_root, SEL, plan_path)
    result = run_apply(plan_path, trusted)
    apply.rollback(storage=storage, apply_id=result.apply_id, now=NOW)
    assert pruned.stat().st_mode & 0o777 == 0o700


def test_replayed_plan_is_refused(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    run_apply(plan_path, trusted)
    with pytest.raises(StalePlanError, match="already applied as"):
        run_apply(plan_path, trusted)


def test_replay_without_state_is_refused(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    """Even with regplan-state/ gone, the tree itself says the plan was applied."""
    import shutil

    run_apply(plan_path, trusted)
    shutil.rmtree(FsStorage.locate(demo_root).state)
    with pytest.raises(StalePlanError, match="already applied"):
        run_apply(plan_path, trusted)


def test_apply_again_after_rollback(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    storage = FsStorage.locate(demo_root)
    first = run_apply(plan_path, trusted)
    apply.rollback(storage=storage, apply_id=first.apply_id, now=NOW)
    second = run_apply(plan_path, trusted)
    assert second.apply_id != first.apply_id
    assert [r.state for r in apply.records(storage)] == [State.ROLLED_BACK, State.APPLIED]


def test_stale_and_untrusted_and_tampered_move_nothing(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey], tmp_path: Path
) -> None:
    original = docker_hashes(demo_root)
    other = [signing.load_trusted(write_pub(OTHER_KEY, tmp_path / "other.pub"))]
    with pytest.raises(SignatureError):
        run_apply(plan_path, other)
    tampered = tmp_path / "tampered.json"
    tampered.write_text(plan_path.read_text().replace('"bytes": 0', '"bytes": 1', 1))
    with pytest.raises(SignatureError):
        run_apply(tampered, trusted)
    with pytest.raises(SignatureError, match="2 required"):
        run_apply(plan_path, trusted, required=2)
    assert docker_hashes(demo_root) == original
    v2 = FsStorage.locate(demo_root).v2
    (v2 / "repositories/team/tool/_manifests/tags/new").mkdir()
    with pytest.raises(StalePlanError, match=r"repositories/team/tool \(changed\)"):
        run_apply(plan_path, trusted, exact=True)
    (v2 / "repositories/team/tool/_manifests/tags/new").rmdir()
    assert docker_hashes(demo_root) == original
    assert apply.records(FsStorage.locate(demo_root)) == []


def test_rollback_refuses_when_a_path_reappeared(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    """Something other than what the apply moved, in the way (not a tag pushed again, not
    the same bytes): refused naming it, nothing moved."""
    storage = FsStorage.locate(demo_root)
    result = run_apply(plan_path, trusted)
    after = docker_hashes(demo_root)
    quarantined = sorted(p for p in os.listdir(quarantine_of(result)))
    [revision, *_] = [
        t.path for t in workflow.load_plan(plan_path).targets if t.kind == TargetKind.REVISION
    ]
    planted = storage.v2 / revision / "link"
    planted.parent.mkdir(parents=True)
    planted.write_text("sha256:" + "f" * 64)
    with pytest.raises(ApplyError, match=r"reappeared since the apply .* nothing was moved"):
        apply.rollback(storage=storage, apply_id=result.apply_id, now=NOW)
    planted.unlink()
    planted.parent.rmdir()
    assert docker_hashes(demo_root) == after
    assert sorted(os.listdir(quarantine_of(result))) == quarantined


def test_purge_and_rollback_after_purge(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    storage = FsStorage.locate(demo_root)
    result = run_apply(plan_path, trusted)
    slots = len(os.listdir(quarantine_of(result)))
    deleted: list[tuple[int, int]] = []
    [done] = apply.purge(
        storage=storage,
        apply_id=result.apply_id,
        older_than=None,
        now=NOW,
        progress=lambda n, total: deleted.append((n, total)),
    )
    assert done.state == State.PURGED
    assert not quarantine_of(result).exists()
    assert deleted[-1] == (slots, slots)
    with pytest.raises(ApplyError, match="was purged"):
        apply.rollback(storage=storage, apply_id=result.apply_id, now=NOW)
    with pytest.raises(ApplyError, match="is purged; only an applied one"):
        apply.purge(storage=storage, apply_id=result.apply_id, older_than=None, now=NOW)
    with pytest.raises(ApplyError, match="no apply nope"):
        apply.rollback(storage=storage, apply_id="nope", now=NOW)


def test_purge_refuses_a_quarantine_that_is_a_symlink(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey], tmp_path: Path
) -> None:
    """A quarantine replaced by a symlink: purge deletes nothing, least of all what
    the link points to."""
    storage = FsStorage.locate(demo_root)
    result = run_apply(plan_path, trusted)
    elsewhere = tmp_path / "elsewhere"
    quarantine_of(result).rename(elsewhere)
    quarantine_of(result).symlink_to(elsewhere)
    before = content_hashes(elsewhere)
    with pytest.raises(
        ApplyError, match="is not a directory \\(a symlink\\?\\); nothing was deleted"
    ):
        apply.purge(storage=storage, apply_id=result.apply_id, older_than=None, now=NOW)
    assert content_hashes(elsewhere) == before
    assert quarantine_of(result).is_symlink()


def test_purge_older_than(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    storage = FsStorage.locate(demo_root)
    result = run_apply(plan_path, trusted)
    assert apply.purge(storage=storage, apply_id=None, older_than=timedelta(days=7), now=NOW) == []
    later = NOW + timedelta(days=8)
    [done] = apply.purge(storage=storage, apply_id=None, older_than=timedelta(days=7), now=later)
    assert done.apply_id == result.apply_id


def test_second_apply_is_locked_out(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    """Another process holding the lock: exit 5 naming it, nothing moved."""
    storage = FsStorage.locate(demo_root)
    original = docker_hashes(demo_root)

    def hold(out: BinaryIO) -> None:
        with StorageLock(storage.state / "lock", command="apply other"):
            out.write(b"locked\n")
            time.sleep(30)  # till it is killed

    with forked(hold) as (holder, said):
        assert said.readline() == b"locked\n"
        with pytest.raises(LockHeldError, match=r"another regplan apply other \(pid \d+ on "):
            run_apply(plan_path, trusted)
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
    assert docker_hashes(demo_root) == original
    with StorageLock(storage.state / "lock", command="x"):
        pass  # released by the kernel when the holder died


def test_quarantine_on_another_filesystem_is_refused(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey]
) -> None:
    """regplan-state/quarantine is a real mount point of another filesystem (tmpfs)."""
    quarantine_dir = demo_root / "regplan-state" / "quarantine"
    quarantine_dir.mkdir(parents=True)
    with tmpfs(quarantine_dir, "1m"):
        original = docker_hashes(demo_root)
        with pytest.raises(ApplyError, match="another filesystem"):
            run_apply(plan_path, trusted)
        assert docker_hashes(demo_root) == original


def test_a_symlinked_state_folder_is_refused(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey], tmp_path: Path
) -> None:
    """A regplan-state/ planted as a link out of the root: nothing is written through it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (demo_root / "regplan-state").symlink_to(outside)
    original = docker_hashes(demo_root)
    with pytest.raises(ApplyError, match="regplan-state: is a symlink, not a real directory"):
        run_apply(plan_path, trusted)
    assert docker_hashes(demo_root) == original
    assert list(outside.iterdir()) == []


def test_a_taken_quarantine_slot_is_refused(
    demo_root: Path,
    plan_path: Path,
    trusted: list[signing.TrustedKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transaction, "new_id", lambda now: "20261128T101500Z-00000000")
    slot = demo_root / "regplan-state" / "quarantine" / "20261128T101500Z-00000000" / "0000003"
    slot.mkdir(parents=True)
    original = docker_hashes(demo_root)
    with pytest.raises(ApplyError, match=r"quarantine already holds .*0000003"):
        run_apply(plan_path, trusted)
    assert docker_hashes(demo_root) == original


def test_real_dir_refuses_symlinks(tmp_path: Path) -> None:
    (tmp_path / "repositories" / "real").mkdir(parents=True)
    (tmp_path / "repositories" / "evil").symlink_to(tmp_path / "repositories" / "real")
    assert real_dir(tmp_path, "repositories/real")
    assert not real_dir(tmp_path, "repositories/missing")
    with pytest.raises(StalePlanError, match="symlink"):
        real_dir(tmp_path, "repositories/evil")


def test_approve_adds_second_signature(
    demo_root: Path, plan_path: Path, trusted: list[signing.TrustedKey], tmp_path: Path
) -> None:
    both = [*trusted, signing.load_trusted(write_pub(OTHER_KEY, tmp_path / "reviewer.pub"))]
    with pytest.raises(SignatureError):
        run_apply(plan_path, both, required=2)
    before = plan_path.read_bytes()
    _, written = approvals.approve(
        plan_path, key=OTHER_KEY, signer="reviewer", now=NOW, trusted=trusted
    )
    assert plan_path.read_bytes() == before  # the approval is detached, beside the plan
    assert written.name.startswith(f"{plan_path.name}.approval-")
    with pytest.raises(SignatureError, match="already signed"):
        approvals.approve(plan_path, key=OTHER_KEY, signer="reviewer", now=NOW, trusted=trusted)
    assert run_apply(plan_path, both, required=2).fingerprint_ok


def test_resume_refuses_a_different_plan_with_the_same_id(
    demo_root: Path,
    plan_path: Path,
    trusted: list[signing.TrustedKey],
    tmp_path: Path,
) -> None:
    """An interrupted apply only resumes with the very plan it began with."""
    with pytest.raises(ApplyError):
        apply.apply_plan(
            plan_path=plan_path,
            trusted=trusted,
            root=None,
            required=1,
            now=NOW,
            opener=on_disk(FaultyDisk(errno.ENOSPC, rename_at=3)),
        )
    plan = workflow.load_plan(plan_path)
    other = attrs.evolve(plan, kept=(), signatures=())
    other = signing.sign(other, KEY, role="planner", signer="x", now=NOW)
    assert other.plan_id == plan.plan_id
    forged = tmp_path / "same-id.json"
    workflow.write_plan(other, forged)
    with pytest.raises(ApplyError, match="differs from the plan apply"):
        run_apply(forged, trusted)
    assert run_apply(plan_path, trusted).resumed
