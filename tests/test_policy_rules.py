"""How a policy's rules combine (#24): a tag is removed when at least one rule selects
it and no rule that selects it keeps it; a repository no rule selects is untouched;
a rule that keeps more never removes more; the order of rules does not matter."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from regplan.decide import rules
from regplan.decide.policy import Keep, Policy, Rule
from regplan.scan.inventory import Inventory, Repository, Tag
from regplan.scan.layout import parse_digest, revision_dir
from regplan.scan.tree import Tree

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DAY = 86_400.0


def inventory(repos: Mapping[str, Mapping[str, float]]) -> Inventory:
    """Repositories of tags, each pushed ``days`` ago (one image per tag)."""
    out = {}
    for name, tags in repos.items():
        made = {
            t: Tag(
                name=t,
                current=parse_digest(
                    "sha256:" + hashlib.sha256(f"{name}:{t}".encode()).hexdigest()
                ),
                pushed_at=NOW.timestamp() - days * DAY,
            )
            for t, days in tags.items()
        }
        revisions = frozenset(t.current for t in made.values() if t.current is not None)
        out[name] = Repository(name=name, tags=made, revisions=revisions)
    return Inventory(
        repositories=out, blobs={}, manifests={}, problems=(), tree=Tree.from_entries({})
    )


def rule(name: str, repos: tuple[str, ...], line: int = 1, **kw: object) -> Rule:
    keep = kw.pop("keep") if "keep" in kw else Keep(newest=0)
    return Rule(name=name, where=f"p.yml:{line}", repositories=repos, keep=keep, **kw)  # type: ignore[arg-type]


def policy(*rs: Rule) -> Policy:
    return Policy(file="p.yml", text="", sha256="0" * 64, rules=rs)


def removed(p: Policy, inv: Inventory) -> set[tuple[str, str]]:
    return set(rules.apply(p, inv, NOW).tags)


TEAM = inventory(
    {
        "team/api": {f"pr-{n}": n for n in range(100, 110)}
        | {"v1.0": 40, "v1.1": 20, "latest": 0.5},
        "team/web": {"v1": 90, "v2": 60, "v3": 3},
        "prod/api": {"v1": 400, "v2": 200},
        "other": {"old": 900},
    }
)


def test_the_brief_in_one_file() -> None:
    """keep the last 2 of team/* and its releases, 105 days of pr-*, never touch prod/*."""
    p = policy(
        rule("team", ("team/*",), 3, keep=Keep(newest=2, tags=("v*",))),
        rule("pr", ("*",), 7, exclude=("other",), tags=("pr-*",), keep=Keep(within="105d")),
        rule("prod", ("prod/*",), 11, keep=Keep(all=True)),
    )
    out = rules.apply(p, TEAM, NOW)
    gone = set(out.tags)
    # pr-106..109 are beyond the 2 newest of team/api and older than 105 days: no rule keeps
    assert gone == {("team/api", f"pr-{n}") for n in range(106, 110)}
    assert out.tags[("team/api", "pr-109")] == (
        'policy rule "team" (p.yml:3): rank 13 > keep newest 2 by push time'
    )
    assert out.notes[("team/api", "pr-103")] == (
        'policy rule "pr" (p.yml:7): within 105d: pushed 2026-08-17 12:00'
    )
    assert out.notes[("team/api", "v1.0")] == 'policy rule "team" (p.yml:3): matches keep tags v*'
    assert ("other", "old") not in out.notes and "other" not in out.selected  # untouched
    assert [(c.rule.name, c.repositories, c.tags, c.removes) for c in out.counts] == [
        ("team", 2, 16, 4),
        ("pr", 3, 10, 4),
        ("prod", 1, 2, 0),
    ]


def test_the_newest_tag_goes_only_with_allow_empty() -> None:
    inv = inventory({"a": {"x": 10, "y": 20}})
    out = rules.apply(policy(rule("all", ("a",), keep=Keep(newest=0))), inv, NOW)
    assert set(out.tags) == {("a", "y")}
    assert "but it is the newest tag of a: kept" in out.notes[("a", "x")]
    emptied = policy(rule("all", ("a",), keep=Keep(newest=0), allow_empty=True))
    assert removed(emptied, inv) == {("a", "x"), ("a", "y")}


def test_untagged_the_longest_age_applies_and_only_to_what_is_left_untagged() -> None:
    """Two rules give a repository untagged ages: the longer one (keeps more) applies.
    What stays tagged is not listed; a revision a removed tag leaves is."""
    inv = inventory({"a": {"x": 30, "y": 1}})
    x, y = (inv.repositories["a"].tags[t].current for t in ("x", "y"))
    assert x is not None and y is not None
    untagged = parse_digest("sha256:" + "ab" * 32)
    repo = attrs.evolve(inv.repositories["a"], revisions=frozenset({x, y, untagged}))
    when = {x: 30.0, y: 1.0, untagged: 5.0}
    mtimes = {
        f"{revision_dir('a', d)}/link": NOW.timestamp() - days * DAY for d, days in when.items()
    }
    inv = attrs.evolve(inv, repositories={"a": repo}, mtimes=mtimes)
    p = policy(
        rule("short", ("a",), 1, keep=None, untagged="1d"),
        rule("long", ("a",), 2, keep=Keep(newest=0), untagged="7d", allow_empty=False),
    )
    out = rules.apply(p, inv, NOW)
    assert out.untagged == {"a": 'policy rule "long" (p.yml:2)'}
    assert set(out.tags) == {("a", "x")}  # y, the newest, stays
    assert out.young == {
        ("a", untagged): 'policy rule "long" (p.yml:2): untagged for less than 7d '
        "(written 2026-11-23 12:00)"
    }  # x's revision is 30 days old: it goes with its tag; y's stays tagged


def test_created_time_that_cannot_be_read_keeps_the_tag() -> None:
    inv = inventory({"a": {"x": 10, "y": 20, "z": 30}})
    out = rules.apply(policy(rule("c", ("a",), keep=Keep(newest=1, by="created"))), inv, NOW)
    assert not out.tags  # no config times: nothing can be ranked
    assert {p.code.value for p in out.problems} == {"unreadable"}


# -- properties ----------------------------------------------------------------

NAMES = ["team/api", "team/web", "prod/api", "lib", "lib/sub"]
TAGS = ["v1", "v2", "pr-1", "pr-2", "latest", "release-3"]
REPO_GLOBS = ["*", "team/*", "prod/*", "lib", "lib*", "nothing/*"]
TAG_GLOBS = ["*", "pr-*", "v*", "release-*"]

inventories = st.dictionaries(
    st.sampled_from(NAMES),
    st.dictionaries(st.sampled_from(TAGS), st.integers(0, 60), min_size=1),
    min_size=1,
).map(inventory)

keeps = st.builds(
    Keep,
    newest=st.none() | st.integers(0, 4),
    within=st.none() | st.sampled_from(["1d", "10d", "30d"]),
    tags=st.lists(st.sampled_from(TAG_GLOBS), max_size=2).map(tuple),
    all=st.booleans(),
)


@st.composite
def rule_lists(draw: st.DrawFn) -> list[Rule]:
    n = draw(st.integers(1, 4))
    return [
        Rule(
            name=f"r{i}",
            where=f"p.yml:{i + 1}",
            repositories=tuple(draw(st.lists(st.sampled_from(REPO_GLOBS), min_size=1, max_size=2))),
            exclude=tuple(draw(st.lists(st.sampled_from(REPO_GLOBS), max_size=1))),
            tags=tuple(draw(st.lists(st.sampled_from(TAG_GLOBS), min_size=1, max_size=2))),
            keep=draw(keeps),
            allow_empty=draw(st.booleans()),
        )
        for i in range(n)
    ]


@settings(max_examples=300, deadline=None)
@given(inventories, rule_lists(), st.lists(st.sampled_from(REPO_GLOBS), min_size=1, max_size=2))
def test_a_rule_that_keeps_all_it_selects_never_removes_more(
    inv: Inventory, rs: list[Rule], globs: list[str]
) -> None:
    before = removed(policy(*rs), inv)
    keeper = Rule(name="keep", where="p.yml:99", repositories=tuple(globs), keep=Keep(all=True))
    assert removed(policy(*rs, keeper), inv) <= before


@settings(max_examples=300, deadline=None)
@given(inventories, rule_lists(), st.data())
def test_more_keep_criteria_never_remove_more(
    inv: Inventory, rs: list[Rule], data: st.DataObject
) -> None:
    before = removed(policy(*rs), inv)
    i = data.draw(st.integers(0, len(rs) - 1))
    k = rs[i].keep
    assert k is not None
    more = data.draw(
        st.sampled_from(
            [
                attrs.evolve(k, newest=(k.newest or 0) + 1),
                attrs.evolve(k, within="60d"),
                attrs.evolve(k, tags=(*k.tags, "pr-*")),
                attrs.evolve(k, all=True),
            ]
        )
    )
    widened = [*rs[:i], attrs.evolve(rs[i], keep=more), *rs[i + 1 :]]
    assert removed(policy(*widened), inv) <= before


@settings(max_examples=300, deadline=None)
@given(inventories, rule_lists(), st.randoms())
def test_no_rule_no_change_and_the_order_of_rules_does_not_matter(
    inv: Inventory, rs: list[Rule], rnd: object
) -> None:
    p = policy(*rs)
    out = rules.apply(p, inv, NOW)
    for name in inv.repositories:
        if not any(rules.selects_repository(r, name) for r in rs):
            assert not any(repo == name for repo, _ in out.tags)
            assert not any(repo == name for repo, _ in out.notes)
    shuffled = list(rs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert removed(policy(*shuffled), inv) == set(out.tags)


@settings(max_examples=200, deadline=None)
@given(inventories, rule_lists())
def test_a_removed_tag_is_selected_and_kept_by_no_rule_that_selects_it(
    inv: Inventory, rs: list[Rule]
) -> None:
    """An oracle written apart from the module: by the rule's words, tag by tag."""
    out = rules.apply(policy(*rs), inv, NOW)
    for (repo_name, tag), why in out.tags.items():
        repo = inv.repositories[repo_name]
        selecting = [r for r in rs if rules.selects_repository(r, repo_name)]
        selecting = [r for r in selecting if any(_fn(tag, g) for g in r.tags)]
        assert selecting and why.startswith('policy rule "')
        for r in selecting:
            assert not _keeps(r, repo, tag)


def _fn(name: str, glob: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, glob)


def _keeps(r: Rule, repo: Repository, tag: str) -> bool:
    k = r.keep
    assert k is not None
    chosen = sorted(
        (t for t in repo.tags if any(_fn(t, g) for g in r.tags)),
        key=lambda t: (-repo.tags[t].pushed_at, t),
    )
    days = {"1d": 1, "10d": 10, "30d": 30, "60d": 60}
    return (
        k.all
        or (k.newest is not None and chosen.index(tag) < k.newest)
        or (
            k.within is not None
            and repo.tags[tag].pushed_at >= (NOW - timedelta(days=days[k.within])).timestamp()
        )
        or any(_fn(tag, g) for g in k.tags)
    )
