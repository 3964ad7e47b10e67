from __future__ import annotations

from pathlib import Path

from regplan import fingerprint
from regplan.layout import Storage
from regplan.scan import walk
from tests.helpers import make_plan, remove_targets, selection


def digest(root: Path) -> fingerprint.TreeDigest:
    return fingerprint.digest_entries(walk(Storage.locate(root).v2).entries)


def test_predicted_after_equals_tree_after_removal(demo_root: Path) -> None:
    plan = make_plan(demo_root, selection(("team/app:v1", "old/repo"), ("*",), prune=True))
    assert digest(demo_root).digest == plan.fingerprint.before
    remove_targets(demo_root, plan)
    after = digest(demo_root)
    assert after.digest == plan.fingerprint.after
    assert after.entries < plan.fingerprint.entries


def test_metadata_changes_are_seen_and_named(demo_root: Path) -> None:
    before = digest(demo_root)
    v2 = Storage.locate(demo_root).v2
    link = v2 / "repositories/team/app/_manifests/tags/v1/current/link"
    link.write_text(link.read_text()[:-1] + "0")
    (v2 / "repositories/new/repo/_manifests").mkdir(parents=True)
    after = digest(demo_root)
    assert after.digest != before.digest
    assert fingerprint.changed_parts(before.parts, after.parts) == [
        "repositories/new (new)",
        "repositories/new/repo (new)",
        "repositories/team/app (changed)",
    ]


def test_blob_size_counts_but_not_contents(demo_root: Path) -> None:
    before = digest(demo_root)
    data = next((Storage.locate(demo_root).v2 / "blobs").rglob("data"))
    original = data.read_bytes()
    data.write_bytes(bytes(len(original)))
    assert digest(demo_root).digest == before.digest  # same size: contents are not read
    data.write_bytes(original + b"!")
    changed = fingerprint.changed_parts(before.parts, digest(demo_root).parts)
    assert changed == [f"{data.parent.parent.relative_to(Storage.locate(demo_root).v2)} (changed)"]
