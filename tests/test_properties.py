"""Planner invariants on random registries and random requests (hypothesis).

Each example writes a real tree, plans, deletes the targets, and checks the
tree that remains with an independent reading of the manifests (plain json).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import attrs
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from regplan.decide.decision import Decision
from regplan.decide.planner import decide
from regplan.decide.protect import parse_protect
from regplan.decide.selection import Resolved, resolve
from regplan.demo.samples import Registry, attached_tag, cosign, image, index
from regplan.errors import SelectionError
from regplan.scan.inventory import Inventory, subject_of
from regplan.scan.layout import part_of, repo_dir, revision_dir, tag_dir
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import reference_digest, reference_entries, remove_targets, selection

REPOS = ["a", "a/b", "c/d", "e"]
TAGS = ["t1", "t2", "latest"]

layer_sets = st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True)
push = st.tuples(
    st.sampled_from(REPOS),
    st.sampled_from([*TAGS, None]),
    st.sampled_from(["image", "index", "referrer", "signature", "orphan-signature"]),
    layer_sets,
    layer_sets,
)


def build(root: Path, pushes: list[tuple[str, str | None, str, list[int], list[int]]]) -> None:
    reg = Registry.create(root)
    last: dict[str, object] = {}
    for n, (repo, tag, kind, la, lb) in enumerate(pushes):
        files = [{f"l{i}": f"layer {i}".encode()} for i in la]
        if kind == "index":
            item: object = index(
                [image(files, arch="amd64"), image([{f"l{i}": b"x"} for i in lb], arch="arm64")]
            )
        elif kind == "referrer" and repo in last:
            subject = last[repo]
            manifest = subject.manifest  # type: ignore[attr-defined]
            item = image([{"sig": str(n).encode()}], subject=manifest)
        elif kind in ("signature", "orphan-signature"):
            # cosign's tag: a signature (even) or attestation (odd) of the last push, or of
            # an image that was never pushed (an orphan)
            target = last.get(repo) if kind == "signature" else image([{"gone": bytes(n)}])
            if target is None:
                continue
            suffix = "sig" if n % 2 == 0 else "att"
            sig = cosign(target, repo, kind=suffix)  # type: ignore[arg-type]
            reg.push(repo, sig, attached_tag(target, suffix))  # type: ignore[arg-type]
            continue
        else:
            item = image(files, created=f"2026-01-{1 + n % 28:02d}T00:00:00Z")
        reg.push(repo, item, tag)  # type: ignore[arg-type]
        last[repo] = item


def manifest_refs(v2: Path, digest: str) -> tuple[set[str], set[str], str | None]:
    """(blobs, children, subject) by plain json, independent of regplan.scan.manifests."""
    algo, hexd = digest.split(":")
    doc = json.loads((v2 / "blobs" / algo / hexd[:2] / hexd / "data").read_bytes())
    blobs = set()
    if "config" in doc:
        blobs = {doc["config"]["digest"], *(x["digest"] for x in doc.get("layers", []))}
    children = {m["digest"] for m in doc.get("manifests", [])}
    subject = doc.get("subject", {}).get("digest")
    return blobs, children, subject


def check_servable(v2: Path, repo: str, digest: str, seen: set[str]) -> None:
    """The registry could serve this manifest: revision, blob, children, layers, links."""
    if digest in seen:
        return
    seen.add(digest)
    algo, hexd = digest.split(":")
    assert (v2 / f"repositories/{repo}/_manifests/revisions/{algo}/{hexd}/link").is_file(), digest
    assert (v2 / "blobs" / algo / hexd[:2] / hexd / "data").is_file()
    blobs, children, _ = manifest_refs(v2, digest)
    for b in blobs:
        ba, bh = b.split(":")
        assert (v2 / "blobs" / ba / bh[:2] / bh / "data").is_file(), b
        assert (v2 / f"repositories/{repo}/_layers/{ba}/{bh}/link").is_file(), b
    for c in children:
        check_servable(v2, repo, c, seen)


def assert_untouched_repos_untouched(inv: Inventory, req: Resolved, decision: Decision) -> None:
    """Nothing outside the request's consequence: other repositories keep every path."""
    touched = set(req.repos) | {r for r, _ in req.tags} | set(req.untagged)
    for name in inv.repositories:
        if name in touched:
            continue
        own = repo_dir(name)
        for t in decision.targets:
            if t.kind.value != "empty_dir":
                assert not (t.path == own or t.path.startswith(own + "/_")), (name, t.path)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    pushes=st.lists(push, min_size=1, max_size=10),
    images=st.lists(st.tuples(st.sampled_from(REPOS), st.sampled_from([*TAGS, None])), max_size=3),
    untagged=st.lists(st.sampled_from([*REPOS, "*", "a*"]), max_size=2),
    prune=st.booleans(),
    protected=st.lists(st.tuples(st.sampled_from(REPOS), st.sampled_from(TAGS)), max_size=2),
)
@example(  # a protected referrer's tag stays when --untagged takes its subject (#21.4)
    pushes=[("a", "t1", "image", [0], [0]), ("a", "t1", "referrer", [0], [0])],
    images=[],
    untagged=["a"],
    prune=False,
    protected=[("a", "t1")],
)
def test_planner_invariants(
    pushes: list[tuple[str, str | None, str, list[int], list[int]]],
    images: list[tuple[str, str | None]],
    untagged: list[str],
    prune: bool,
    protected: list[tuple[str, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, pushes)
        storage = FsStorage.locate(root)
        v2 = storage.v2
        inv = scan(storage)
        specs = tuple(r if t is None else f"{r}:{t}" for r, t in images)
        lines = "\n".join(f"{r}:{t}" for r, t in protected)
        sel = attrs.evolve(
            selection(specs, tuple(untagged), prune), protect=parse_protect(lines, "p")
        )
        try:
            req = resolve(sel, inv)
        except SelectionError:
            assume(False)
            raise
        decision = decide(inv, req, prune=prune)
        assert inv.tree.digest == reference_digest(reference_entries(v2))
        removed = {p for t in decision.targets for p in inv.tree.subtree(t.path)}
        predicted = inv.tree.without(sorted(decision.removed_paths, key=part_of))

        assert_untouched_repos_untouched(inv, req, decision)
        # attached tags (by name, or accessories: a manifest with a subject, #21.6)
        # follow their subject: checked below
        kept_tags = [
            (name, tag, repo.tags[tag].current)
            for name, repo in inv.repositories.items()
            if name not in req.repos
            for tag in repo.tags
            if (name, tag) not in req.tags and subject_of(inv, repo, tag) is None
        ]
        attached = [
            (name, tag, subject)
            for name, repo in inv.repositories.items()
            for tag in repo.tags
            if (subject := subject_of(inv, repo, tag)) is not None and subject in repo.revisions
        ]
        remaining_revs = {
            (name, d)
            for name, repo in inv.repositories.items()
            if name not in req.repos
            for d in repo.revisions
            if revision_dir(name, d) not in removed
        }

        remove_targets(root, decision)  # type: ignore[arg-type]
        assert (v2 / "blobs").is_dir() and (v2 / "repositories").is_dir()

        # The whole closure of every kept tag survives, and so does every revision that stays.
        for name, tag, current in kept_tags:
            assert (v2 / tag_dir(name, tag) / "current" / "link").is_file()
            assert current is not None
            check_servable(v2, name, str(current), set())
        for name, d in remaining_revs:
            check_servable(v2, name, str(d), set())
        # A referrer of a manifest that stays, stays.
        for name, repo in inv.repositories.items():
            for d in repo.revisions:
                subject = inv.manifests[d].subject
                if subject is not None and (name, subject) in remaining_revs:
                    assert (name, d) in remaining_revs, "referrer of a kept manifest removed"
        # An attached tag stays exactly while its subject stays (unless asked for by name,
        # or protected).
        for name, tag, subject in attached:
            has_tag = (v2 / tag_dir(name, tag) / "current" / "link").is_file()
            has_subject = (v2 / revision_dir(name, subject) / "link").is_file()
            current = inv.repositories[name].tags[tag].current
            spared = (name, current) in req.protected  # then it stays whatever (#21.4)
            if has_tag:
                assert has_subject or spared, f"{name}:{tag} stayed without its subject"
            elif (name, tag) not in req.tags and name not in req.repos:
                assert not has_subject, f"{name}:{tag} removed while its subject stays"
        # Whatever --protect names survives whole, with its tags.
        for name, digest in req.protected:
            check_servable(v2, name, str(digest), set())
            for t in inv.repositories[name].tags.values():
                if t.current == digest:
                    assert (v2 / tag_dir(name, t.name) / "current" / "link").is_file()
        # The predicted fingerprint is the tree's.
        assert reference_digest(reference_entries(v2)) == predicted
