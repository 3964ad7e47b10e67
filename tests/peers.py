"""Four peers' cleanup policies, read as each peer documents them (the oracles), and
the registry the translations in policies/ are proven on (#24).

Each oracle reads the peer's own file from policies/peers/ and says, from the tags'
push and created times alone, which tags (and untagged manifests) the peer removes.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from regplan.demo.samples import Image, Registry, image
from regplan.scan.layout import revision_dir, tag_dir

PEERS = Path(__file__).parents[1] / "policies" / "peers"

TAGS: dict[str, dict[str, float]] = {
    "app": {
        "release-1": 50, "release-2": 40, "release-3": 30, "release-4": 20, "release-5": 10,
        "pr-1": 30, "pr-2": 20, "pr-3": 5, "pr-4": 1, "latest": 0.5, "dev": 100,
    },
    "infra/db": {
        "v2.1": 200, "v2.2": 100, "v3.0": 10, "db-prod": 300, "old": 400,
        "nightly-1": 3, "nightly-2": 40, "nightly-3": 80,
    },
    "tmp/scratch": {"v1.0": 2, "v1.1": 20, "junk": 50},
    "team/web": {"main": 1, "stable": 300, "feature-a": 100, "feature-b": 5, "1.0": 200, "2.0": 60},
    "gitlab/app": {
        "main": 1, "stable": 300, "latest": 0.5, "feature-a": 100, "feature-b": 5,
        "1.0": 200, "2.0": 60, "3.0": 40,
    },
}  # fmt: skip
"""repository -> tag -> days between its push (and its image's created time) and NOW."""
UNTAGGED = {"app": (10.0, 2.0)}
"""repository -> days since each untagged manifest was pushed."""

Removed = set[tuple[str, str]]
"""(repository, tag), or (repository, "@" + days) for an untagged manifest."""


def pushes(now: datetime) -> Iterator[tuple[str, str | None, Image, float]]:
    """(repository, tag or None, image, days ago): an image of its own per push."""
    for repo, tags in TAGS.items():
        for tag, days in tags.items():
            created = (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
            yield repo, tag, image([{"f": f"{repo}:{tag}".encode()}], created=created), days
    for repo, ages in UNTAGGED.items():
        for days in ages:
            yield repo, None, image([{"u": f"{repo}@{days}".encode()}]), days


def build(root: Path, now: datetime) -> dict[str, str]:
    """The registry (written as distribution writes it), dated; digest -> "@days"."""
    reg = Registry.create(root)
    for repo, tag, item, _ in pushes(now):
        reg.push(repo, item, tag)
    return date(root, now)


def date(root: Path, now: datetime) -> dict[str, str]:
    """Date every tag's links and every untagged manifest by its push (days before
    ``now``); returns each untagged manifest's digest -> "@days"."""
    v2 = root / "docker" / "registry" / "v2"
    untagged = {}
    for repo, tag, item, days in pushes(now):
        when = (now - timedelta(days=days)).timestamp()
        links = [v2 / revision_dir(repo, item.digest) / "link"]
        if tag is None:
            untagged[str(item.digest)] = f"@{days:g}"
        else:
            links.append(v2 / tag_dir(repo, tag) / "current" / "link")
        for link in links:
            os.utime(link, (when, when))
    return untagged


# -- the peers, as documented ----------------------------------------------------


def ecr() -> Removed:
    """ECR lifecycle policy on "app": rules by rulePriority; the first rule whose
    selection matches an image decides it; imageCountMoreThan expires the images
    beyond the N most recently pushed it matches, sinceImagePushed those older."""
    doc = json.loads((PEERS / "ecr-lifecycle.json").read_text())
    items = [(t, d) for t, d in TAGS["app"].items()] + [(None, d) for d in UNTAGGED["app"]]
    decided: set[object] = set()
    out: Removed = set()
    for rule in sorted(doc["rules"], key=lambda r: r["rulePriority"]):
        sel = rule["selection"]
        matched = [
            (t, d)
            for t, d in items
            if (t, d) not in decided
            and (
                (sel["tagStatus"] == "untagged" and t is None)
                or (
                    sel["tagStatus"] == "tagged"
                    and t is not None
                    and any(fnmatch.fnmatchcase(t, p) for p in sel["tagPatternList"])
                )
            )
        ]
        decided.update(matched)
        newest_first = sorted(matched, key=lambda x: x[1])
        if sel["countType"] == "imageCountMoreThan":
            expired = newest_first[sel["countNumber"] :]
        else:
            expired = [x for x in matched if x[1] > sel["countNumber"]]
        out |= {("app", t if t is not None else f"@{d:g}") for t, d in expired}
    return out


def zot() -> Removed:
    """zot storage.retention: the first policy whose repositories match applies; a tag
    stays when a keepTags entry keeps it (its patterns, unanchored, match; and it has
    no rules or one holds: among the N most recently pushed its patterns match, or
    pushed within the hours); every other tag of the repository goes."""
    doc = json.loads((PEERS / "zot-retention.json").read_text())["storage"]["retention"]
    out: Removed = set()
    for repo, tags in TAGS.items():
        policy = next((p for p in doc["policies"] if _zot_match(repo, p["repositories"])), None)
        if policy is None:
            continue
        kept = set()
        for entry in policy["keepTags"]:
            pats = entry.get("patterns", [".*"])
            matching = sorted(
                (t for t in tags if any(re.search(p, t) for p in pats)), key=lambda t: tags[t]
            )
            rules = {k: v for k, v in entry.items() if k != "patterns"}
            for rank, t in enumerate(matching, 1):
                n = rules.get("mostRecentlyPushedCount")
                hours = rules.get("pushedWithin")
                if (
                    not rules
                    or (n is not None and rank <= n)
                    or (hours is not None and tags[t] * 24 <= float(hours.rstrip("h")))
                ):
                    kept.add(t)
        out |= {(repo, t) for t in tags if t not in kept}
    return out


def _zot_match(repo: str, globs: list[str]) -> bool:
    def regex(g: str) -> str:
        return re.escape(g).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")

    return any(re.fullmatch(regex(g), repo) for g in globs)


def harbor() -> Removed:
    """Harbor tag retention on the project "team" (algorithm or): an artifact stays
    when any rule retains it; the others in the repositories its rules select go."""
    doc = json.loads((PEERS / "harbor-retention.json").read_text())
    out: Removed = set()
    for repo, tags in TAGS.items():
        project, _, name = repo.partition("/")
        if project != doc["scope"]["ref"]:
            continue
        kept = set()
        for rule in doc["rules"]:
            if not any(_star(name, s["pattern"]) for s in rule["scope_selectors"]["repository"]):
                continue
            chosen = sorted(
                (t for t in tags if any(_star(t, s["pattern"]) for s in rule["tag_selectors"])),
                key=lambda t: tags[t],
            )
            params = rule["params"]
            for rank, t in enumerate(chosen, 1):
                if (
                    rule["template"] == "always"
                    or (rule["template"] == "latestPushedK" and rank <= params["latestPushedK"])
                    or (
                        rule["template"] == "nDaysSinceLastPush"
                        and tags[t] <= params["nDaysSinceLastPush"]
                    )
                ):
                    kept.add(t)
        out |= {(repo, t) for t in tags if t not in kept}
    return out


def _star(name: str, pattern: str) -> bool:
    """doublestar: ``**`` anything, ``*`` within a segment, ``{a,b}`` alternatives."""
    m = re.fullmatch(r"\{(.*)\}", pattern)
    if m:
        return any(_star(name, p) for p in m.group(1).split(","))
    regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    return re.fullmatch(regex, name) is not None


def gitlab() -> Removed:
    """A GitLab project's cleanup policy, step by step as documented: all tags; less
    latest; those name_regex matches; less those name_regex_keep matches; by created
    date, newest first; less the keep_n first; less those newer than older_than; the
    rest are deleted."""
    doc = json.loads((PEERS / "gitlab-cleanup.json").read_text())
    p = doc["container_expiration_policy_attributes"]
    tags = TAGS["gitlab/app"]
    left = [t for t in tags if t != "latest"]
    left = [t for t in left if re.fullmatch(p["name_regex"], t)]
    left = [t for t in left if not re.fullmatch(p["name_regex_keep"], t)]
    left = sorted(left, key=lambda t: tags[t])[p["keep_n"] :]
    days = int(p["older_than"].rstrip("d"))
    return {("gitlab/app", t) for t in left if tags[t] > days}


ORACLES = {"ecr-lifecycle": ecr, "zot-retention": zot, "harbor-retention": harbor,
           "gitlab-cleanup": gitlab}  # fmt: skip
