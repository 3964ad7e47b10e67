"""An approved plan applied to a registry pushed to since planning (#32), on random
registries (hypothesis).

Each example writes a small registry to disk (demo.samples.Registry: repositories,
nested ones, tags, multi-arch indexes, layers shared within and across repositories),
plans a random request (``--image`` with ``--keep-last``, ``--untagged``, ``--gc``,
``--prune``) and signs it; then pushes, re-pushes (same tag with new content; same tag,
same content, later), deletes tags and pushes untagged manifests, and applies. Whatever
happened between:

1. what the apply removed (read from the disk before and after) lies under targets the
   plan lists and under targets a fresh plan of the same request on the tree as it was
   just before the apply would remove;
2. every tag and revision present before the apply that the plan did not approve for
   removal (not listed, or changed since planning) is there after it, and every image
   left in the tree is whole (each blob, layer link and index child it reaches), read
   with plain json (helpers.unwhole), not with regplan's scan.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import attrs
from hypothesis import HealthCheck, Phase, assume, event, example, given, settings
from hypothesis import strategies as st

from regplan import apply, workflow
from regplan.decide.flags import Retention
from regplan.decide.planner import decide
from regplan.decide.protect import parse_protect
from regplan.decide.selection import ImageSpec, Selection, resolve
from regplan.demo.samples import Pushable, Registry, attached_tag, cosign, image, index
from regplan.errors import SelectionError, StalePlanError
from regplan.plans.signing import load_trusted
from regplan.policy import load
from regplan.scan.layout import tag_dir
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from tests.helpers import (
    KEY,
    NOW,
    broken_images,
    images_on_disk,
    reference_entries,
    selection,
    write_plan_file,
    write_pub,
)

NESTED = "a/b"
"""A repository inside another's folder (a repository holding one goes as its parts)."""
REPOS = ["a", "b", "c", NESTED]
NEW = "n"
"""A repository first pushed between plan and apply."""
TAGS = ["t1", "t2", "t3"]
LATER = 2_000_000_000.0
"""Push times after planning: later than any the registry held when planned."""

layers = st.lists(st.integers(0, 4), min_size=1, max_size=2, unique=True)
"""Layers from a small pool: images share them, in a repository and across."""
Push = tuple[str, str | None, str, list[int], list[int]]
KINDS = ["image", "image", "index", "index", "referrer", "signature"]
"""Of what a push is (images and indexes the likelier)."""


def pushes(repos: list[str]) -> st.SearchStrategy[Push]:
    """(repository, tag or untagged, its kind (KINDS), its layers, its second platform's)."""
    return st.tuples(
        st.sampled_from(repos),
        st.sampled_from([*TAGS, None]),
        st.sampled_from(KINDS),
        layers,
        layers,
    )


Op = tuple[str, Push | int]
ops = st.one_of(
    st.tuples(st.just("push"), pushes([*REPOS, NEW])),  # new content, a tag's or untagged
    st.tuples(st.just("retag"), st.integers(0, 99)),  # a tag pushed again, same content
    st.tuples(st.just("delete"), st.integers(0, 99)),  # a tag deleted
)


@attrs.frozen(kw_only=True)
class Request:
    """A request over a registry's pushes: ``--image`` names a repository (and a tag)
    that some push wrote, picked by number; an empty request is ``--untagged '*'``."""

    images: list[tuple[int, bool]]
    keep_last: int | None
    untagged: list[str]
    gc: bool
    prune: bool
    older_than: str | None = None
    protect: list[int] = attrs.field(factory=list)
    """``--protect`` lines: the repository and tag of a push, picked by number."""
    policy: tuple[str, int, bool] | None = None
    """A cleanup policy instead of the flags above (but --prune and --protect): one rule
    over the repositories a glob matches, keeping the newest n and (or not) every t1;
    with ``untagged``, their untagged manifests of any age; with ``gc``, the registry's."""

    def policy_text(self) -> str:
        assert self.policy is not None
        glob, newest, t1 = self.policy
        lines = ["version: 1", "rules:", "  - name: r", f'    repositories: ["{glob}"]']
        lines += ["    keep:", f"      newest: {newest}"] + (['      tags: ["t1"]'] if t1 else [])
        lines += ["    untagged: 0d"] if self.untagged else []
        return "\n".join(lines + (["registry:", "  gc: true"] if self.gc else [])) + "\n"

    def selection(self, history: list[Push]) -> Selection:
        picked = [history[n % len(history)] for n, _ in self.images]
        specs = [
            repo if not with_tag or tag is None else f"{repo}:{tag}"
            for (repo, tag, *_), (_, with_tag) in zip(picked, self.images, strict=True)
        ]
        lines = [
            f"{repo}:{tag}"
            for repo, tag, *_ in (history[n % len(history)] for n in self.protect)
            if tag is not None
        ]
        protect = parse_protect("\n".join(lines), "protect.txt")
        if self.policy is not None:
            policy = load.read(self.policy_text().encode(), "policy.yml")
            return Selection(prune=self.prune, protect=protect, policy=policy)
        sel = Selection(
            images=tuple(ImageSpec.parse(s) for s in specs),
            untagged=tuple(self.untagged),
            prune=self.prune,
            retention=Retention(keep_last=self.keep_last, older_than=self.older_than),
            gc=self.gc,
            protect=protect,
        )
        return attrs.evolve(sel, untagged=("*",)) if sel.empty else sel


requests = st.builds(
    Request,
    images=st.lists(st.tuples(st.integers(0, 9), st.booleans()), max_size=2),
    keep_last=st.one_of(st.none(), st.integers(0, 2)),
    untagged=st.lists(st.sampled_from([*REPOS, "*"]), max_size=1),
    gc=st.booleans(),
    prune=st.booleans(),
    older_than=st.sampled_from([None, None, "30d", "400d"]),
    protect=st.lists(st.integers(0, 9), max_size=1),
    policy=st.one_of(
        st.none(), st.tuples(st.sampled_from(["*", "a*", "c"]), st.integers(0, 2), st.booleans())
    ),
)


def item_of(p: Push, n: int) -> Pushable:
    """The image (or two-platform index) a push writes; ``n`` tells apart pushes of the
    same layers (its config's time), so equal ``n`` and layers are the same content."""
    _, _, kind, la, lb = p
    created = f"2026-01-{1 + n % 28:02d}T00:00:00Z"
    first = image([{f"l{i}": f"layer {i}".encode()} for i in la], created=created)
    if kind != "index":
        return first
    second = image([{f"l{i}": f"layer {i}".encode()} for i in lb], arch="arm64", created=created)
    return index([first, second])


@attrs.define
class Client:
    """Pushes as a registry's clients make them. A referrer (an OCI manifest with a
    subject) or a cosign signature or attestation (its tag) is of the repository's
    last push; with none, an image is pushed instead."""

    reg: Registry
    last: dict[str, Pushable] = attrs.field(factory=dict)

    def push(self, p: Push, n: int) -> None:
        repo, tag, kind, _, _ = p
        subject = self.last.get(repo)
        if kind == "signature" and subject is not None:
            suffix = "sig" if n % 2 == 0 else "att"
            self.reg.push(repo, cosign(subject, repo, kind=suffix), attached_tag(subject, suffix))
            return
        item = item_of(p, n)
        if kind == "referrer" and subject is not None:
            item = image([{"sig": str(n).encode()}], subject=subject.manifest)
        self.reg.push(repo, item, tag)
        self.last[repo] = item


def build(root: Path, history: list[Push]) -> Client:
    """The registry as planned: every file but the tags' links (their push times) dated
    at the first push, so that ages are known at the plan's time (written now, they
    would be later than it: no age)."""
    client = Client(Registry.create(root))
    for n, p in enumerate(history):
        client.push(p, n)
    first = Registry(v2=client.reg.v2).clock
    for path in client.reg.v2.rglob("*"):
        if path.is_file() and path.parent.name != "current":
            os.utime(path, (first, first))
    return client


def meddle(v2: Path, changes: list[Op], last: dict[str, Pushable]) -> None:
    """What the registry's clients did between plan and apply."""
    client = Client(Registry(v2=v2, clock=LATER), dict(last))
    for n, (kind, what) in enumerate(changes):
        tags = sorted(images_on_disk(v2)[0].items())
        if kind == "push":
            assert isinstance(what, tuple)
            client.push(what, n)
        elif tags and isinstance(what, int):
            (repo, tag), (digest, _) = tags[what % len(tags)]
            if kind == "retag":
                client.reg.tag(repo, tag, digest)  # type: ignore[arg-type]
            else:
                shutil.rmtree(v2 / tag_dir(repo, tag))


def covered(path: str, tops: set[str]) -> bool:
    """``path`` is one of ``tops`` or lies under one."""
    parts = path.split("/")
    return any("/".join(parts[:i]) in tops for i in range(1, len(parts) + 1))


def fresh_targets(root: Path, sel: Selection) -> set[str]:
    """What a plan of ``sel`` made now, at the plan's time, would remove (a request that
    no longer matches anything removes nothing)."""
    inv = location.read(FsStorage.locate(root), created=sel.created, mtimes=sel.ages)
    return {
        t.path for t in decide(inv, resolve(sel, inv, NOW, strict=False), prune=sel.prune).targets
    }


Tags = dict[tuple[str, str], tuple[str, float]]


def approved_tag(targets: set[str], planned: Tags, tag: tuple[str, str], now: Tags) -> bool:
    """Whether the plan approved removing this tag as it is now: a target holds it, and
    it is the one planned (same manifest, same push time)."""
    return covered(tag_dir(*tag), targets) and planned.get(tag) == now[tag]


def approved_revision(
    targets: set[str], planned: set[tuple[str, str]], rev: tuple[str, str]
) -> bool:
    """Whether the plan approved removing this revision: a target holds it, and it was
    there when planned (a revision is its content)."""
    repo, digest = rev
    place = f"repositories/{repo}/_manifests/revisions/{digest.replace(':', '/', 1)}"
    return covered(place, targets) and rev in planned


def scratch() -> str | None:
    """A tmpfs where there is one: an apply fsyncs every batch and record, which on this
    machine's disk made the examples wait on the disk more than they compute."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def check_busy_apply(history: list[Push], request: Request, changes: list[Op]) -> None:
    """Plan, meddle, apply; the two properties of the module's docstring."""
    with tempfile.TemporaryDirectory(prefix="regplan-busy-", dir=scratch()) as tmp:
        root = Path(tmp) / "root"
        client = build(root, history)
        v2 = FsStorage.locate(root).v2
        sel = request.selection(history)
        try:
            plan = write_plan_file(root, sel, Path(tmp) / "p.json")
        except SelectionError:
            assume(False)
            raise
        assume(plan.targets)
        planned = images_on_disk(v2)
        meddle(v2, changes, client.last)
        fresh = fresh_targets(root, sel)
        before, (tags, revisions) = reference_entries(v2), images_on_disk(v2)
        assert broken_images(v2) == []  # pushes and deletes leave every image whole
        pub = write_pub(KEY, Path(tmp) / "k.pub")
        try:
            result = apply.apply_plan(
                plan_path=Path(tmp) / "p.json",
                trusted=[load_trusted(pub)],
                root=None,
                required=1,
                now=NOW,
            )
        except StalePlanError:
            event("nothing applies any more")
            assert reference_entries(v2) == before  # nothing of the plan applies: nothing moved
            return
        assert result.fingerprint_ok, result.changed
        for _, why in result.skipped:
            event("skipped: " + ("needed by" if why.startswith("needed by") else why))
        event("moved all" if not result.skipped else "moved some")
        listed = {t.path for t in plan.targets}
        moved = listed - {p for p, _ in result.skipped}
        gone = before.keys() - reference_entries(v2).keys()
        assert all(covered(p, moved) for p in gone), sorted(
            p for p in gone if not covered(p, moved)
        )
        assert moved <= before.keys()  # what is gone since the plan is skipped
        assert all(covered(p, fresh) for p in moved), sorted(
            p for p in moved if not covered(p, fresh)
        )
        after_tags, after_revisions = images_on_disk(v2)
        for tag, (digest, _) in tags.items():
            if not approved_tag(listed, planned[0], tag, tags):
                assert after_tags.get(tag, ("gone",))[0] == digest, f"{tag}: not approved, gone"
        for rev in revisions:
            if not approved_revision(listed, planned[1], rev):
                assert rev in after_revisions, f"{rev}: not approved, gone"
        assert broken_images(v2) == []


def examples(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


A_BLOB_REUSED = example(  # --gc removes layer 1's blob; a new push in another repository uses it
    history=[("a", "t1", "image", [0, 1], [0]), ("a", "t1", "image", [0], [0])],
    request=Request(images=[], keep_last=None, untagged=["a"], gc=True, prune=True),
    changes=[("push", ("c", "t1", "image", [1], [0]))],
)
A_TAG_REPUSHED = example(  # the approved tag pushed again with the same content, later
    history=[("a", "t1", "image", [0], [0]), ("a", "t2", "index", [1], [2])],
    request=Request(images=[(1, True)], keep_last=None, untagged=[], gc=True, prune=True),
    changes=[("retag", 1), ("push", ("n", "t1", "index", [1], [3]))],
)
AN_UNTAGGED_PUSH = example(  # nobody approved the new untagged manifest that uses a removed blob
    history=[("a", "t1", "image", [0, 1], [0]), ("a", "t2", "image", [2], [0])],
    request=Request(images=[(0, False)], keep_last=1, untagged=[], gc=True, prune=False),
    changes=[("push", ("a", None, "image", [1], [0]))],
)

NO_LONGER_CHOSEN = example(  # a tag's history entry the plan lists, no longer chosen once the
    # tag is pushed again with new content
    history=[("a", "t1", "image", [0], [0]), ("a", "t2", "image", [0], [0])],
    request=Request(images=[(0, False)], keep_last=0, untagged=[], gc=False, prune=False),
    changes=[("push", ("a", "t1", "image", [0, 1], [0]))],
)

AN_INDEX_CHILD = example(  # a new index whose child is the untagged image the plan removes
    history=[("a", None, "image", [0], [0]), ("a", "t2", "image", [2], [0])],
    request=Request(images=[], keep_last=None, untagged=["a"], gc=True, prune=True),
    changes=[("push", ("a", "t1", "index", [0], [1]))],
)


@examples(50)
@given(
    history=st.lists(pushes(REPOS), min_size=1, max_size=7),
    request=requests,
    changes=st.lists(ops, min_size=1, max_size=4),
)
@A_BLOB_REUSED
@A_TAG_REPUSHED
@AN_UNTAGGED_PUSH
@NO_LONGER_CHOSEN
@AN_INDEX_CHILD
def test_a_busy_apply_removes_only_what_is_approved_and_still_chosen(
    history: list[Push], request: Request, changes: list[Op]
) -> None:
    """Random registries, requests, and pushes, re-pushes and deletes between plan and
    apply: the module's two properties."""
    check_busy_apply(history, request, changes)


@settings(phases=[Phase.explicit], deadline=None)
@given(history=st.just([]), request=requests, changes=st.just([]))
@example(
    history=[("a", "t1", "image", [0], [0]), (NESTED, "t1", "image", [0], [0])],
    request=Request(images=[(0, True)], keep_last=None, untagged=[], gc=False, prune=False),
    changes=[("retag", 0)],
)
def test_a_tag_pushed_again_in_a_repository_holding_another_keeps_its_layer_links(
    history: list[Push], request: Request, changes: list[Op]
) -> None:
    """``--image a:t1`` where ``a`` holds the repository ``a/b`` and t1 is its only tag: the
    plan removes ``a`` as its parts. t1 pushed again (same content, later) keeps
    ``a/_manifests``; what t1 needs under ``a/_layers`` must stay with it."""
    check_busy_apply(history, request, changes)


def test_a_plan_made_in_the_second_of_a_push_applies(tmp_path: Path) -> None:
    """``--image a --keep-last 1``: a:new pushed 0.3 s into the second in which the plan
    is made (0.7 s into it); the plan approves a:old, and the apply, with nothing
    pushed since, moves it."""
    root = tmp_path / "root"
    reg = Registry.create(root)
    reg.clock = NOW.timestamp() - 120 + 0.3  # each tag: a minute later
    reg.push("a", image([{"l": b"old"}]), "old")
    reg.push("a", image([{"l": b"new"}]), "new")  # at NOW + 0.3 s
    when = NOW + timedelta(seconds=0.7)
    sel = attrs.evolve(selection(("a",)), retention=Retention(keep_last=1))
    with workflow.make_plan(
        storage=FsStorage.locate(root), selection=sel, argv=(), key=KEY, signer="t", now=when
    ) as draft:
        plan = workflow.whole(draft)
    assert tag_dir("a", "old") in {t.path for t in plan.targets}
    workflow.write_plan(plan, tmp_path / "p.json")
    pub = write_pub(KEY, tmp_path / "k.pub")
    result = apply.apply_plan(
        plan_path=tmp_path / "p.json", trusted=[load_trusted(pub)], root=None, required=1, now=when
    )
    assert result.skipped == ()
