"""``show --json`` gives each image its facts as fields, not only in its reason: when the
tag was pushed, its config's created time (when read), the retention rule that decided
it and its rank there (#33), for the flags and for a policy alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from regplan.decide.flags import Retention
from regplan.decide.policy import Keep, Policy, Rule
from regplan.plans.planfile import InMemory
from regplan.views import render, reviewjson
from tests.helpers import make_plan, selection


def _images(root: Path, sel: Any) -> dict[str, dict[str, Any]]:
    plan = make_plan(root, sel)
    text = "".join(reviewjson.review_json_chunks(InMemory(plan), render.unchecked(plan)))
    doc = json.loads(text)
    return {
        i["name"]: i
        for r in doc["repositories"]
        for verdict in ("removed", "kept", "untouched")
        for i in r[verdict]
    }


def test_the_flags_rule_and_rank_and_the_push_time_are_fields(demo_root: Path) -> None:
    sel = attrs.evolve(selection(("team/app",), ("team/app",)), retention=Retention(keep_last=1))
    found = _images(demo_root, sel)
    ranked = {n: i for n, i in found.items() if n.startswith("team/app:")}
    assert {i["rule"] for i in ranked.values()} == {"--image team/app"}
    assert sorted(i["rank"] for i in ranked.values()) == [1, 2, 3]
    newest = min(ranked.values(), key=lambda i: i["rank"])
    assert newest["name"] == "team/app:latest"
    assert all(i["pushed"] and i["pushed"].endswith("Z") for i in ranked.values())
    assert found["old/repo:2019"]["rule"] is None  # no retention rule looked at it
    untagged = [i for n, i in found.items() if "@" in n]
    assert untagged and all(i["pushed"] is None for i in untagged)


def test_a_policy_rule_names_itself(demo_root: Path) -> None:
    rule = Rule(name="keep-one", where="p.yml:2", repositories=("team/app",), keep=Keep(newest=1))
    policy = Policy(file="p.yml", sha256="0" * 64, text="", rules=(rule,))
    found = _images(demo_root, attrs.evolve(selection(), policy=policy))
    ranked = {n: i for n, i in found.items() if n.startswith("team/app:")}
    assert {i["rule"] for i in ranked.values()} == {rule.label}
    assert sorted(i["rank"] for i in ranked.values()) == [1, 2, 3]
