"""Retention by pull on the demo registry: ``--pulled-within`` and a policy's
``pulled_within`` / ``most_recently_pulled``, read from a pull store (``plan --pulls``):
what is kept and removed, with the reasons; an index's pulls and its children's count
for each other, a signature's do not keep its image; records that do not cover the
window keep everything the rule judges, with a problem; the plan records what it used,
and an apply decides again with that."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.pulls.pull import Pull
from regplan.pulls.store import Store

DAY = 86400.0
V1 = "sha256:e25bfb276a1adab5224e2e0d1dfef9ac5e70ec5460d278970338183aec19746f"
V2 = "sha256:19bd07053b3ae698d035e03c5cd4afa5f6d0f996a5e436cf4d486752df69dd43"
TOOL = "sha256:b38ae84133c21f93a5873bd4424fe66e32ab93ba06d078e74491c2345ff29f0f"
SIGNED_V1 = "sha256:42a9f1525273e59e178f58e7cc0401fc6a90fc9995db201813f4eada05db4d74"
SIG = "sha256:b09fdd91c1e7603da9d6f28a692cb2e9b4f61e2231d559ee6c0375469feb22db"


def store(
    path: Path, pulls: list[tuple[str, str | None, str | None, float]], *, since: float = 200
) -> Path:
    """A pull store: (repo, digest, tag, days ago) each, records from ``since`` days ago."""
    now = time.time()
    with Store.open(path, create=True) as s:
        made = [
            Pull(key=f"k{n}", repo=r, digest=d, tag=t, at=now - ago * DAY)
            for n, (r, d, t, ago) in enumerate(pulls)
        ]
        s.add(made, ("log:test", now - since * DAY, now - 60))
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    made = CliRunner().invoke(cli, ["keygen", str(tmp_path / "k")])
    assert made.exit_code == 0, made.output
    return tmp_path / "k"


def plan(root: Path, key: Path, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the plan file, ``show --json``) of ``plan ARGS``."""
    out = root.parent / "p.json"
    made = CliRunner().invoke(
        cli, ["plan", "--root", str(root), "--key", str(key), "-o", str(out), "-q", *args]
    )
    assert made.exit_code == 0, made.output
    shown = CliRunner().invoke(cli, ["show", str(out), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    return json.loads(out.read_text()), json.loads(shown.output)


def verdicts(doc: dict[str, Any], repo: str) -> dict[str, tuple[str, str]]:
    """tag -> (verdict, reason) of ``repo``'s image tags in the plan."""
    return {
        i["tag"]: (i["verdict"], i["reason"])
        for i in doc["images"]
        if i["repo"] == repo and i["tag"] is not None and i["kind"] == "image"
    }


def test_pulled_within_keeps_what_was_pulled_and_says_when(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    db = store(tmp_path / "p.db", [("team/app", V1, "v1", 1), ("team/app", V2, None, 45)])
    doc, shown = plan(
        demo_root, key, "--image", "team/app", "--pulled-within", "30d", "--pulls", str(db)
    )
    got = verdicts(doc, "team/app")
    assert got["v1"][0] == "kept"
    assert got["v1"][1].startswith("pulled within 30d: last pulled ") and got["v1"][1].endswith(
        "(1 pull)"
    )
    assert got["v2"] == ("removed", got["v2"][1])
    assert got["v2"][1].startswith("not pulled within 30d: last pulled ")
    assert "not pulled since records began" in got["latest"][1]
    record = doc["request"]["pulls"]
    assert record["file"] == str(db) and len(record["sha256"]) == 64
    assert [(i["tag"], i["count"]) for i in record["images"]] == [("v1", 1), ("v2", 1)]
    assert doc["request"]["selection"]["pulled_within"] == "30d"
    facts = {
        i["tag"]: (i.get("pulls"), i.get("last_pulled") is not None)
        for r in shown["repositories"]
        if r["name"] == "team/app"
        for v in ("kept", "removed")
        for i in r[v]
    }
    assert facts == {"v1": (1, True), "v2": (1, True), "latest": (0, False)}
    for schema, instance in (
        ((Path(__file__).parents[1] / "plans/plan.schema.json").read_text(), doc),
        (resources.files("regplan.views").joinpath("review.schema.json").read_text(), shown),
    ):
        jsonschema.validate(instance, json.loads(schema))
    why = CliRunner().invoke(cli, ["why", str(demo_root.parent / "p.json"), "team/app:v2"])
    assert why.exit_code == 7 and "not pulled within 30d: last pulled " in why.output


def test_an_index_and_its_children_count_for_each_other(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    """A pull of one platform by digest keeps the index's tag; no pull removes it."""
    child = json.loads(
        (demo_root / "docker/registry/v2/blobs/sha256" / TOOL[7:9] / TOOL[7:] / "data").read_bytes()
    )["manifests"][0]["digest"]
    args = ("--image", "team/tool", "--pulled-within", "30d", "--allow-empty-repos", "--pulls")
    kept, _ = plan(
        demo_root, key, *args, str(store(tmp_path / "a.db", [("team/tool", child, None, 2)]))
    )
    assert verdicts(kept, "team/tool")["1.0"][0] == "kept"
    gone, _ = plan(
        demo_root, key, *args, str(store(tmp_path / "b.db", [("old/repo", V1, None, 2)]))
    )
    assert verdicts(gone, "team/tool")["1.0"][0] == "removed"


def test_a_signature_pull_does_not_keep_its_image(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    db = store(tmp_path / "p.db", [("team/signed", SIG, f"sha256-{SIGNED_V1[7:]}.sig", 1)])
    doc, _ = plan(
        demo_root,
        key,
        "--image",
        "team/signed",
        "--pulled-within",
        "30d",
        "--allow-empty-repos",
        "--pulls",
        str(db),
    )
    assert verdicts(doc, "team/signed")["v1"][0] == "removed"


def test_records_not_covering_the_window_keep_everything_with_a_problem(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    db = store(tmp_path / "p.db", [("team/app", V1, "v1", 1)], since=10)
    doc, shown = plan(
        demo_root, key, "--image", "team/app", "--pulled-within", "30d", "--pulls", str(db)
    )
    got = verdicts(doc, "team/app")
    assert {v for v, _ in got.values()} == {"kept"}
    assert "pulls known only since" in got["v2"][1] and got["v2"][1].endswith(": kept")
    problems = [p for p in doc["problems"] if p["code"] == "pulls-uncovered"]
    assert len(problems) == 1
    assert problems[0]["message"].startswith("--image team/app: pulls known only since ")
    assert doc["targets"] == [] or all("team/app" not in t["path"] for t in doc["targets"])
    assert any(p["code"] == "pulls-uncovered" for p in shown["problems"])


POLICY = """version: 1
rules:
  - name: pulled
    repositories: [team/app]
    allow_empty: true
    keep:
      most_recently_pulled: 1
"""


def test_most_recently_pulled_keeps_the_n_last_pulled(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    db = store(tmp_path / "p.db", [("team/app", V1, "v1", 5), ("team/app", V2, "v2", 1)])
    doc, _ = plan(demo_root, key, "--policy", str(policy), "--pulls", str(db))
    got = verdicts(doc, "team/app")
    assert (
        got["v2"][0] == "kept"
        and "rank 1 of keep most recently pulled 1: last pulled" in got["v2"][1]
    )
    assert got["v1"][0] == "removed" and "not among the 1 most recently pulled" in got["v1"][1]
    assert got["latest"][0] == "removed"


def test_keeping_by_pulls_needs_a_pull_store(demo_root: Path, key: Path, tmp_path: Path) -> None:
    """No --pulls: a usage error before any scan; a --pulls that is not a store: exit 1,
    one line."""
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 64)
    base = ["plan", "--root", str(demo_root), "--key", str(key), "-o", str(tmp_path / "x.json")]
    for args, code, said in (
        (["--image", "team/app", "--pulled-within", "30d"], 64, "--pulled-within keeps by pulls"),
        (["--policy", str(policy)], 64, "the policy keeps by pulls"),
        (
            ["--image", "team/app", "--pulled-within", "30d", "--pulls", str(junk)],
            1,
            "not a pull store",
        ),
    ):
        r = CliRunner().invoke(cli, [*base, *args])
        assert r.exit_code == code, r.output
        assert said in r.output
    assert not (tmp_path / "x.json").exists()


def test_an_apply_decides_again_with_the_pulls_the_plan_recorded(
    demo_root: Path, key: Path, tmp_path: Path
) -> None:
    """Pulls recorded after the plan change nothing: the apply moves every target."""
    db = store(tmp_path / "p.db", [("team/app", V1, "v1", 1)])
    doc, _ = plan(
        demo_root, key, "--image", "team/app", "--pulled-within", "30d", "--pulls", str(db)
    )
    with Store.open(db) as s:
        s.add([Pull(key="later", repo="team/app", digest=V2, at=time.time())])
    r = CliRunner().invoke(
        cli, ["apply", str(demo_root.parent / "p.json"), "--trust", f"{key}.pub", "--json"]
    )
    assert r.exit_code == 0, r.output
    done = json.loads(r.output)
    assert done["moved"] == len(doc["targets"]) > 0
    assert done.get("skipped", []) in ([], 0)


@pytest.mark.parametrize("form", ["text", "markdown", "html"])
def test_every_review_shows_each_images_last_pull(
    demo_root: Path, key: Path, tmp_path: Path, form: str
) -> None:
    db = store(tmp_path / "p.db", [("team/app", V1, "v1", 1), ("team/app", V1, None, 2)])
    plan(demo_root, key, "--image", "team/app", "--pulled-within", "30d", "--pulls", str(db))
    shown = CliRunner().invoke(cli, ["show", str(demo_root.parent / "p.json"), "--format", form])
    assert shown.exit_code == 0, shown.output
    assert "last pulled " in shown.output and "(2 pulls)" in shown.output
    assert "not pulled since records began " in shown.output
    if form != "text":
        assert "Last pulled" in shown.output  # the column's head


def test_policy_check_says_what_pulls_keep(demo_root: Path, tmp_path: Path) -> None:
    """Per rule, how many tags the pulls keep; without --pulls, one line, exit 1."""
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    db = store(tmp_path / "p.db", [("team/app", V1, "v1", 5), ("team/app", V2, "v2", 1)])
    args = ["policy", "check", str(policy), "--root", str(demo_root)]
    r = CliRunner().invoke(cli, [*args, "--pulls", str(db), "--json"])
    assert r.exit_code == 0, r.output
    assert [
        (c["rule"], c["tags"], c["removes"], c["kept_by_pulls"]) for c in json.loads(r.output)
    ] == [("pulled", 3, 2, 1)]
    text = CliRunner().invoke(cli, [*args, "--pulls", str(db)])
    assert "(pulls keep 1)" in text.output
    bare = CliRunner().invoke(cli, args)
    assert bare.exit_code == 1
    assert bare.output.strip().endswith("keeps by pulls: give --pulls FILE (regplan pulls)")
