"""Reasons that say why (#33 item 7): the children of a kept index name the tag that keeps
them, the children of one removed index share one reason, a tag several rules keep names
first the rule that keeps it whatever else is pushed, and a tie in rank says how it was
broken. On real trees (the policy's untagged ages read the files' times)."""

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
from regplan.demo.samples import Image, Index, Registry, image, index
from regplan.scan.layout import revision_dir, tag_dir
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage

T0 = 1_767_225_600.0
"""2026-01-01 00:00 UTC: Registry pushes a minute apart from here."""


def multi(n: int) -> Index:
    """A multi-arch index of three children, distinct per ``n``."""
    arches = ("amd64", "arm64", "s390x")
    return index([image([{"a": f"{n}{a}".encode()}], arch=a) for a in arches])


def six_indexes(root: Path) -> list[Index]:
    """team/app:v0 .. v5, each a multi-arch index; every file but the tags' current
    links written at T0."""
    reg = Registry.create(root)
    pushed = [multi(n) for n in range(6)]
    for n, item in enumerate(pushed):
        reg.push("team/app", item, f"v{n}")
    for base, _, files in os.walk(root):
        for f in files:
            path = Path(base) / f
            if not (path.name == "link" and path.parent.name == "current"):
                os.utime(path, (T0, T0))
    return pushed


def policy(*rs: Rule) -> Policy:
    return Policy(file="p.yml", text="", sha256="0" * 64, rules=rs)


def decided(root: Path, sel: Selection, now: datetime) -> Decision:
    inv = scan(FsStorage.locate(root), created=sel.created, mtimes=sel.ages)
    return decide(inv, resolve(sel, inv, now))


def reasons(d: Decision) -> dict[str, str]:
    return {k.path: k.reason for k in d.kept} | {t.path: t.reason for t in d.targets}


def children(item: Index) -> list[Image]:
    return list(item.children)


KEEP_TWO = Rule(
    name="team", where="p.yml:2", repositories=("team/*",), keep=Keep(newest=2), untagged="7d"
)


def test_children_of_a_kept_index_name_the_tag_that_keeps_them(tmp_path: Path) -> None:
    """A day after the pushes every revision is younger than the rule's 7d, but the
    children of v4's and v5's indexes are kept because those tags stay: the reason names
    the tag (not "untagged for less than 7d", which reads as "goes in 6 days")."""
    pushed = six_indexes(tmp_path)
    d = decided(tmp_path, Selection(policy=policy(KEEP_TWO)), datetime(2026, 1, 2, tzinfo=UTC))
    why = reasons(d)
    for n in (4, 5):
        for child in children(pushed[n]):
            reason = why[revision_dir("team/app", child.digest)]
            assert "untagged for less than" not in reason
            assert f"kept tag team/app:v{n} reaches it" in reason
    # the children of a removed tag's index are untagged now, and young: their own age
    for child in children(pushed[0]):
        assert "untagged for less than 7d" in why[revision_dir("team/app", child.digest)]


def test_untagged_flag_names_the_kept_tag_too(tmp_path: Path) -> None:
    """``--untagged``: an index child stays because a kept tag reaches it, by name."""
    pushed = six_indexes(tmp_path)
    d = decided(tmp_path, Selection(untagged=("team/*",)), datetime(2026, 1, 2, tzinfo=UTC))
    why = reasons(d)
    for child in children(pushed[3]):
        reason = why[revision_dir("team/app", child.digest)]
        assert reason == "untagged, but the kept tag team/app:v3 reaches it (index child)"


def test_children_of_one_removed_index_share_one_reason(tmp_path: Path) -> None:
    """Twenty days on, v0..v3 go, and their indexes' children with them: every child
    of one index says the same (not "untagged: no tag reaches it" for some, by the
    order of their digests), and names the image whose removal takes it."""
    pushed = six_indexes(tmp_path)
    d = decided(tmp_path, Selection(policy=policy(KEEP_TWO)), datetime(2026, 1, 20, tzinfo=UTC))
    targets = {t.path: t for t in d.targets}
    for n in range(4):
        kids = [targets[revision_dir("team/app", c.digest)] for c in children(pushed[n])]
        assert {t.reason for t in kids} == {f"child of removed index team/app@{pushed[n].digest}"}
        assert {t.refs for t in kids} == {(f"team/app:v{n}",)}


def test_children_of_an_untagged_index_share_one_reason(tmp_path: Path) -> None:
    """An index no tag points to, removed by ``--untagged``: its children are reached
    from it, whatever their digests."""
    reg = Registry.create(tmp_path)
    reg.push("team/app", image([{"keep": b"me"}]), "latest")
    loose = [multi(n) for n in range(4)]
    for item in loose:
        reg.push("team/app", item)
    d = decided(tmp_path, Selection(untagged=("team/app",)), datetime(2026, 1, 2, tzinfo=UTC))
    targets = {t.path: t for t in d.targets}
    for item in loose:
        kids = [targets[revision_dir("team/app", c.digest)] for c in children(item)]
        assert {t.reason for t in kids} == {f"child of removed index team/app@{item.digest}"}


def test_a_tag_kept_by_two_rules_names_first_the_one_that_keeps_it_by_name(
    tmp_path: Path,
) -> None:
    """``prod: keep all`` comes after ``team: keep newest 5`` in the file; v5 is rank 1
    of team's five, which the next pushes change, while prod keeps it whatever is
    pushed: prod is named first, and team after it."""
    six_indexes(tmp_path)
    prod = Rule(
        name="prod", where="p.yml:9", repositories=("team/*",), tags=("v5",), keep=Keep(all=True)
    )
    team = Rule(name="team", where="p.yml:2", repositories=("team/*",), keep=Keep(newest=5))
    inv = scan(FsStorage.locate(tmp_path))
    out = rules.apply(policy(team, prod), inv, datetime(2026, 1, 2, tzinfo=UTC))
    assert out.notes[("team/app", "v5")] == (
        'policy rule "prod" (p.yml:9): keeps every tag it selects; also policy rule "team" '
        "(p.yml:2): rank 1 of keep newest 5 by push time"
    )
    assert out.notes[("team/app", "v4")] == (
        'policy rule "team" (p.yml:2): rank 2 of keep newest 5 by push time'
    )


def ties(root: Path) -> None:
    """tie/x: e pushed first, then b, a, d, c all in one second, the newest."""
    reg = Registry.create(root)
    for name in ("e", "b", "a", "d", "c"):
        reg.push("tie/x", image([{"t": name.encode()}]), name)
    for name in ("b", "a", "d", "c"):
        current = root / "docker/registry/v2" / tag_dir("tie/x", name) / "current/link"
        os.utime(current, (T0 + 600, T0 + 600))


def test_a_tie_in_rank_is_broken_by_name_and_says_so(tmp_path: Path) -> None:
    """Four tags pushed in the same second rank by name (a, b, c, d); each reason that
    gives a rank says it was a tie and how ties are broken."""
    ties(tmp_path)
    sel = Selection(images=(ImageSpec.parse("tie/x"),), retention=Retention(keep_last=2))
    d = decided(tmp_path, sel, datetime(2026, 1, 2, tzinfo=UTC))
    gone = {t.path.rsplit("/", 1)[1] for t in d.targets if "/_manifests/tags/" in t.path}
    assert gone == {"c", "d", "e"}
    inv = scan(FsStorage.locate(tmp_path))
    notes = resolve(sel, inv, datetime(2026, 1, 2, tzinfo=UTC)).tag_notes
    tie = "same push time as {}: ties rank by tag name in ASCII order"
    assert notes[("tie/x", "a")] == f"rank 1 of keep-last 2 by push time ({tie.format('b, c, d')})"
    assert notes[("tie/x", "b")] == f"rank 2 of keep-last 2 by push time ({tie.format('a, c, d')})"
    why = reasons(d)
    assert why[tag_dir("tie/x", "d")] == (
        f"beyond keep-last 2: rank 4 by push time ({tie.format('a, b, c')})"
    )
    assert why[tag_dir("tie/x", "e")] == "beyond keep-last 2: rank 5 by push time"


def test_a_policy_tie_says_so_and_the_newest_tag_is_rank_1(tmp_path: Path) -> None:
    """A policy ranks ties alike, and the newest tag it spares (no ``allow_empty``) is
    the tag ranked first, by the same rule."""
    ties(tmp_path)
    inv = scan(FsStorage.locate(tmp_path))
    none = Rule(name="none", where="p.yml:2", repositories=("tie/*",), keep=Keep(newest=0))
    out = rules.apply(policy(none), inv, datetime(2026, 1, 2, tzinfo=UTC))
    assert set(out.tags) == {("tie/x", t) for t in "bcde"}
    assert out.notes[("tie/x", "a")].startswith(
        'policy rule "none" (p.yml:2): rank 1 > keep newest 0 by push time (same push time '
        "as b, c, d: ties rank by tag name in ASCII order), but it is the newest tag of tie/x"
    )
