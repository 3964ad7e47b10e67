"""A push or ``created`` time later than the plan's (clock skew, a forged config) is no
age (#33, also): the tag is kept and the plan reports it, as a missing time is; it does
not rank as the newest and push a truly newer tag out of ``keep-last``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from regplan.decide import rules
from regplan.decide.decision import Decision
from regplan.decide.flags import Retention
from regplan.decide.planner import decide
from regplan.decide.policy import Keep, Policy, Rule
from regplan.decide.selection import ImageSpec, Selection, resolve
from regplan.demo.samples import Registry, image
from regplan.scan.layout import revision_dir, tag_dir
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage

NOW = datetime(2026, 1, 2, tzinfo=UTC)
LATER = datetime(2026, 3, 1, tzinfo=UTC).timestamp()


def three(root: Path, *, created: bool = False) -> None:
    """r: a, b, c pushed a minute apart on 2026-01-01; c's push time (or, with
    ``created``, its config's time) is in March, after the plan's time."""
    reg = Registry.create(root)
    for n, name in enumerate("abc"):
        when = "2026-03-01T00:00:00Z" if created and name == "c" else f"2025-12-0{n + 1}T00:00:00Z"
        reg.push("r", image([{"f": name.encode()}], created=when), name)
    if not created:
        os.utime(root / "docker/registry/v2" / tag_dir("r", "c") / "current/link", (LATER, LATER))


def decided(root: Path, sel: Selection) -> Decision:
    inv = scan(FsStorage.locate(root), created=sel.created)
    return decide(inv, resolve(sel, inv, NOW))


def gone(d: Decision) -> set[str]:
    return {t.path.rsplit("/", 1)[1] for t in d.targets if "/_manifests/tags/" in t.path}


def test_a_push_after_the_plan_is_kept_and_reported_not_ranked_newest(tmp_path: Path) -> None:
    """keep-last 1: c (pushed "in March") is kept as undated, b is the newest dated tag
    and stays, a goes; the plan's problems name c."""
    three(tmp_path)
    d = decided(
        tmp_path, Selection(images=(ImageSpec.parse("r"),), retention=Retention(keep_last=1))
    )
    assert gone(d) == {"a"}
    kept = {k.path: k.reason for k in d.kept}
    assert kept[tag_dir("r", "c")] == (
        "pushed 2026-03-01 00:00, after the plan's time 2026-01-02 00:00: cannot tell its age; kept"
    )
    assert [(p.path, p.code.value) for p in d.problems] == [(tag_dir("r", "c"), "unreadable")]


def test_a_created_time_after_the_plan_is_kept_and_reported(tmp_path: Path) -> None:
    """By created time, in a policy: c's config says March; it is kept and reported, and
    b, the newest that can be dated, is rank 1."""
    three(tmp_path, created=True)
    rule = Rule(name="r", where="p.yml:2", repositories=("r",), keep=Keep(newest=1, by="created"))
    policy = Policy(file="p.yml", text="", sha256="0" * 64, rules=(rule,))
    inv = scan(FsStorage.locate(tmp_path), created=True)
    out = rules.apply(policy, inv, NOW)
    assert set(out.tags) == {("r", "a")}
    assert out.notes[("r", "c")] == (
        'policy rule "r" (p.yml:2): created 2026-03-01 00:00, after the plan\'s time '
        "2026-01-02 00:00: cannot tell its age"
    )
    assert (
        out.notes[("r", "b")]
        == 'policy rule "r" (p.yml:2): rank 1 of keep newest 1 by created time'
    )
    assert [p.path for p in out.problems] == [tag_dir("r", "c")]


def test_a_time_at_the_plan_is_a_time(tmp_path: Path) -> None:
    """A push at the plan's very second is dated (only later is no age)."""
    three(tmp_path)
    at = NOW.timestamp()
    os.utime(tmp_path / "docker/registry/v2" / tag_dir("r", "c") / "current/link", (at, at))
    d = decided(
        tmp_path, Selection(images=(ImageSpec.parse("r"),), retention=Retention(keep_last=1))
    )
    assert gone(d) == {"a", "b"}
    assert not d.problems


def test_an_untagged_manifest_written_after_the_plan_is_kept_and_reported(tmp_path: Path) -> None:
    """A policy's ``untagged`` age: a revision link dated after the plan's time is no age
    either (not "untagged for less than 7d"): kept, and reported."""
    reg = Registry.create(tmp_path)
    reg.push("r", image([{"f": b"tagged"}]), "latest")
    loose = reg.push("r", image([{"f": b"loose"}]))
    link = tmp_path / "docker/registry/v2" / revision_dir("r", loose) / "link"
    os.utime(link, (LATER, LATER))
    rule = Rule(name="u", where="p.yml:2", repositories=("r",), untagged="7d")
    policy = Policy(file="p.yml", text="", sha256="0" * 64, rules=(rule,))
    inv = scan(FsStorage.locate(tmp_path), mtimes=True)
    out = rules.apply(policy, inv, NOW)
    assert out.young[("r", loose)] == (
        'policy rule "u" (p.yml:2): untagged, written 2026-03-01 00:00, after the plan\'s '
        "time 2026-01-02 00:00: cannot tell its age; kept"
    )
    assert [p.path for p in out.problems] == [revision_dir("r", loose)]


def test_a_push_in_the_plans_own_second_is_not_after_it(tmp_path: Path) -> None:
    """A plan records its time in whole seconds and an apply decides again at that time:
    a push 0.3 s into the second of a plan made at 0.7 s (recorded as 0.0) is dated."""
    three(tmp_path)
    at = NOW.timestamp() + 0.3
    os.utime(tmp_path / "docker/registry/v2" / tag_dir("r", "c") / "current/link", (at, at))
    sel = Selection(images=(ImageSpec.parse("r"),), retention=Retention(keep_last=1))
    d = decided(tmp_path, sel)  # at NOW, as the apply decides again
    assert gone(d) == {"a", "b"}
    assert not d.problems
