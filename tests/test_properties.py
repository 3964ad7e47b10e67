"""Planner invariants on random registries and random requests (hypothesis).

The planner is pure: most examples run on a registry held in memory (``MemTree``,
written the way distribution writes one), whose walk's events (scan.tokens) build the
inventory through the same ``scan.build`` every storage uses. A few examples write the
registry to disk instead and go through the filesystem's scan: there the scan must
find the inventory the memory's events build. Each example plans, deletes the
targets, and checks the tree that remains with an independent reading of the
manifests (plain json).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import attrs
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from regplan.decide.decision import Decision
from regplan.decide.planner import decide
from regplan.decide.protect import parse_protect
from regplan.decide.selection import Resolved, resolve
from regplan.demo.samples import Blob, Index, Pushable, Registry, attached_tag, cosign, image, index
from regplan.errors import SelectionError
from regplan.scan import tokens
from regplan.scan.build import Side, build, share_of
from regplan.scan.inventory import Inventory, Problem, ProblemCode, subject_of
from regplan.scan.layout import (
    Digest,
    blob_data,
    layer_dir,
    part_of,
    printable,
    repo_dir,
    revision_dir,
    tag_dir,
    tag_index_dir,
    upload_dir,
)
from regplan.scan.tokens import Event
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
Push = tuple[str, str | None, str, list[int], list[int]]


@attrs.define
class MemTree:
    """A registry's ``docker/registry/v2`` held in memory: its files, folders, and what
    a walk cannot see (symlinks, special files, names a plan cannot hold), with the
    same events a walk of it on disk yields."""

    files: dict[str, bytes] = attrs.field(factory=dict)
    dirs: set[str] = attrs.field(factory=set)
    mtimes: dict[str, float] = attrs.field(factory=dict)
    symlinks: dict[str, str] = attrs.field(factory=dict)
    specials: set[str] = attrs.field(factory=set)
    unnameable: set[str] = attrs.field(factory=set)

    def mkdir(self, rel: str) -> None:
        while rel and rel not in self.dirs:
            self.dirs.add(rel)
            rel = rel.rpartition("/")[0]

    def write(self, rel: str, data: bytes, mtime: float | None = None) -> None:
        self.mkdir(rel.rpartition("/")[0])
        self.files[rel] = data
        if mtime is not None:
            self.mtimes[rel] = mtime

    def is_file(self, rel: str) -> bool:
        return rel in self.files

    def is_dir(self, rel: str) -> bool:
        return rel in self.dirs

    def read(self, rel: str) -> bytes:
        return self.files[rel]

    def remove(self, rel: str) -> None:
        """``rel`` and everything below it."""

        def below(paths: Iterable[str]) -> list[str]:
            return [p for p in paths if p == rel or p.startswith(rel + "/")]

        for mapping in (self.files, self.mtimes, self.symlinks):
            for path in below(mapping):
                del mapping[path]
        for paths in (self.dirs, self.specials, self.unnameable):
            paths.difference_update(below(paths))

    def entries(self) -> dict[str, str]:
        """Every path with its fingerprint token (what reference_entries reads on disk)."""
        out: dict[str, str] = dict.fromkeys(self.dirs, str(tokens.DIRECTORY))
        for rel, data in self.files.items():
            if rel.endswith("/link") or rel == "link":
                out[rel] = tokens.link(data[: tokens.LINK_LIMIT].decode("utf-8", "replace"))
            else:
                out[rel] = tokens.file(len(data))
        out |= {rel: tokens.symlink(target) for rel, target in self.symlinks.items()}
        out |= dict.fromkeys(self.specials, tokens.SPECIAL)
        out |= dict.fromkeys(self.unnameable, tokens.UNNAMEABLE)
        return {rel: token for rel, token in out.items() if self.seen(rel)}

    def seen(self, rel: str) -> bool:
        """Whether a walk reaches ``rel``: never below a link or a name not walked."""
        unseen = self.symlinks.keys() | self.unnameable
        parent = rel.rpartition("/")[0]
        while parent:
            if parent in unseen:
                return False
            parent = parent.rpartition("/")[0]
        return True

    def walk(self, side: Side) -> Iterator[Event]:
        """The walk's events, part by part, each part's paths sorted and closed by its
        end event; what the walk notes on the side (push times, what it cannot see)."""
        for rel, when in self.mtimes.items():
            if tokens.dated(rel, rel.rpartition("/")[2], mtimes=False):
                side.mtimes[rel] = when
        blind = [
            (rel, ProblemCode.SYMLINK, "symlink in registry storage (not followed, kept)")
            for rel in self.symlinks
        ]
        blind += [
            (rel, ProblemCode.SPECIAL_FILE, "fifo in registry storage") for rel in self.specials
        ]
        blind += [(rel, ProblemCode.UNNAMEABLE, "name not walked") for rel in self.unnameable]
        for rel, code, message in sorted(b for b in blind if self.seen(b[0])):
            side.blind.append(rel)
            shown = printable(rel) if code == ProblemCode.UNNAMEABLE else rel  # as fsscan's
            side.problems.append(Problem(path=shown, code=code, message=message))
        by_part: dict[str, list[Event]] = {}
        for rel, token in self.entries().items():
            by_part.setdefault(part_of(rel), []).append((rel, tokens.Token(token), part_of(rel)))
        for part in sorted(by_part):
            yield from sorted(by_part[part])
            yield part, tokens.PART_END, part

    def reader(self, paths: Sequence[str], limit: int) -> Iterator[bytes | OSError]:
        for rel in paths:
            data = self.files.get(rel)
            if data is None:
                yield FileNotFoundError(2, "no such file", rel)
            else:
                yield data if limit < 0 else data[:limit]

    def inventory(self) -> Inventory:
        """What a scan of this tree finds, built from the walk's events (scan.build)."""
        side = Side()
        share = share_of(self.walk(side), side, mtimes=False)
        return build([share], self.reader, created=False, mtimes=False)


@attrs.define
class MemRegistry:
    """demo.samples.Registry's pushes, the way distribution stores them, into a MemTree."""

    tree: MemTree = attrs.field(factory=MemTree)
    clock: float = 1_767_225_600.0  # as Registry: each tag push advances it a minute

    def __attrs_post_init__(self) -> None:
        self.tree.mkdir("blobs")
        self.tree.mkdir("repositories")

    def _link(self, rel: str, digest: Digest, mtime: float | None = None) -> None:
        self.tree.write(f"{rel}/link", str(digest).encode(), mtime)

    def blob(self, blob: Blob) -> None:
        if blob_data(blob.digest) not in self.tree.files:
            self.tree.write(blob_data(blob.digest), blob.data)

    def _manifest(self, repo: str, manifest: Blob) -> None:
        self.blob(manifest)
        self._link(revision_dir(repo, manifest.digest), manifest.digest)

    def push(self, repo: str, item: Pushable, tag: str | None = None) -> Digest:
        self.tree.mkdir(upload_dir(repo, "x").rpartition("/")[0])
        images = item.children if isinstance(item, Index) else (item,)
        for img in images:
            for b in img.blobs:
                self.blob(b)
                self._link(layer_dir(repo, b.digest), b.digest)
            if isinstance(item, Index):
                self._manifest(repo, img.manifest)
        self._manifest(repo, item.manifest)
        if tag is not None:
            self._link(tag_index_dir(repo, tag, item.digest), item.digest)
            self.clock += 60
            self._link(tag_dir(repo, tag) + "/current", item.digest, self.clock)
        return item.digest


class Pusher(Protocol):
    def push(self, repo: str, item: Pushable, tag: str | None = None) -> Digest: ...


def push_all(reg: Pusher, pushes: list[Push]) -> None:
    last: dict[str, Pushable] = {}
    for n, (repo, tag, kind, la, lb) in enumerate(pushes):
        files = [{f"l{i}": f"layer {i}".encode()} for i in la]
        if kind == "index":
            item: Pushable = index(
                [image(files, arch="amd64"), image([{f"l{i}": b"x"} for i in lb], arch="arm64")]
            )
        elif kind == "referrer" and repo in last:
            item = image([{"sig": str(n).encode()}], subject=last[repo].manifest)
        elif kind in ("signature", "orphan-signature"):
            # cosign's tag: a signature (even) or attestation (odd) of the last push, or of
            # an image that was never pushed (an orphan)
            target = last.get(repo) if kind == "signature" else image([{"gone": bytes(n)}])
            if target is None:
                continue
            suffix = "sig" if n % 2 == 0 else "att"
            reg.push(repo, cosign(target, repo, kind=suffix), attached_tag(target, suffix))
            continue
        else:
            item = image(files, created=f"2026-01-{1 + n % 28:02d}T00:00:00Z")
        reg.push(repo, item, tag)
        last[repo] = item


def build_registry(root: Path, pushes: list[Push]) -> None:
    """The pushes written to a registry on disk under ``root``."""
    push_all(Registry.create(root), pushes)


def in_memory(pushes: list[Push]) -> MemTree:
    reg = MemRegistry()
    push_all(reg, pushes)
    return reg.tree


class View(Protocol):
    """A registry tree as the checks read it: on disk, or in memory."""

    def is_file(self, rel: str) -> bool: ...

    def is_dir(self, rel: str) -> bool: ...

    def read(self, rel: str) -> bytes: ...


@attrs.frozen
class OnDisk:
    v2: Path

    def is_file(self, rel: str) -> bool:
        return (self.v2 / rel).is_file()

    def is_dir(self, rel: str) -> bool:
        return (self.v2 / rel).is_dir()

    def read(self, rel: str) -> bytes:
        return (self.v2 / rel).read_bytes()


def manifest_refs(tree: View, digest: str) -> tuple[set[str], set[str], str | None]:
    """(blobs, children, subject) by plain json, independent of regplan.scan.manifests."""
    algo, hexd = digest.split(":")
    doc = json.loads(tree.read(f"blobs/{algo}/{hexd[:2]}/{hexd}/data"))
    blobs = set()
    if "config" in doc:
        blobs = {doc["config"]["digest"], *(x["digest"] for x in doc.get("layers", []))}
    children = {m["digest"] for m in doc.get("manifests", [])}
    subject = doc.get("subject", {}).get("digest")
    return blobs, children, subject


def check_servable(tree: View, repo: str, digest: str, seen: set[str]) -> None:
    """The registry could serve this manifest: revision, blob, children, layers, links."""
    if digest in seen:
        return
    seen.add(digest)
    algo, hexd = digest.split(":")
    assert tree.is_file(f"repositories/{repo}/_manifests/revisions/{algo}/{hexd}/link"), digest
    assert tree.is_file(f"blobs/{algo}/{hexd[:2]}/{hexd}/data")
    blobs, children, _ = manifest_refs(tree, digest)
    for b in blobs:
        ba, bh = b.split(":")
        assert tree.is_file(f"blobs/{ba}/{bh[:2]}/{bh}/data"), b
        assert tree.is_file(f"repositories/{repo}/_layers/{ba}/{bh}/link"), b
    for c in children:
        check_servable(tree, repo, c, seen)


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


@attrs.frozen(kw_only=True)
class Request:
    images: list[tuple[str, str | None]]
    untagged: list[str]
    prune: bool
    protected: list[tuple[str, str]]

    def resolve(self, inv: Inventory) -> Resolved:
        specs = tuple(r if t is None else f"{r}:{t}" for r, t in self.images)
        lines = "\n".join(f"{r}:{t}" for r, t in self.protected)
        sel = attrs.evolve(
            selection(specs, tuple(self.untagged), self.prune),
            protect=parse_protect(lines, "p"),
        )
        try:
            return resolve(sel, inv)
        except SelectionError:
            assume(False)
            raise


requests = st.builds(
    Request,
    images=st.lists(st.tuples(st.sampled_from(REPOS), st.sampled_from([*TAGS, None])), max_size=3),
    untagged=st.lists(st.sampled_from([*REPOS, "*", "a*"]), max_size=2),
    prune=st.booleans(),
    protected=st.lists(st.tuples(st.sampled_from(REPOS), st.sampled_from(TAGS)), max_size=2),
)


@attrs.frozen
class Planned:
    """A plan's decision on a tree, and what the tree said before its targets went."""

    inv: Inventory
    req: Resolved
    decision: Decision
    kept_tags: list[tuple[str, str, Digest | None]]
    attached: list[tuple[str, str, Digest]]
    remaining_revs: set[tuple[str, Digest]]

    @classmethod
    def of(cls, inv: Inventory, request: Request) -> Planned:
        req = request.resolve(inv)
        decision = decide(inv, req, prune=request.prune)
        removed = {p for t in decision.targets for p in inv.tree.subtree(t.path)}
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
        return cls(inv, req, decision, kept_tags, attached, remaining_revs)

    def check_what_remains(self, tree: View, entries: dict[str, str]) -> None:
        """After the targets went: ``tree`` (and its ``entries``) is what remains."""
        inv, req = self.inv, self.req
        assert tree.is_dir("blobs") and tree.is_dir("repositories")
        # The whole closure of every kept tag survives, and so does every revision that stays.
        for name, tag, current in self.kept_tags:
            assert tree.is_file(tag_dir(name, tag) + "/current/link")
            assert current is not None
            check_servable(tree, name, str(current), set())
        for name, d in self.remaining_revs:
            check_servable(tree, name, str(d), set())
        # A referrer of a manifest that stays, stays.
        for name, repo in inv.repositories.items():
            for d in repo.revisions:
                subject = inv.manifests[d].subject
                if subject is not None and (name, subject) in self.remaining_revs:
                    assert (name, d) in self.remaining_revs, "referrer of a kept manifest removed"
        # An attached tag stays exactly while its subject stays (unless asked for by name,
        # or protected).
        for name, tag, subject in self.attached:
            has_tag = tree.is_file(tag_dir(name, tag) + "/current/link")
            has_subject = tree.is_file(revision_dir(name, subject) + "/link")
            current = inv.repositories[name].tags[tag].current
            spared = (name, current) in req.protected  # then it stays whatever (#21.4)
            if has_tag:
                assert has_subject or spared, f"{name}:{tag} stayed without its subject"
            elif (name, tag) not in req.tags and name not in req.repos:
                assert not has_subject, f"{name}:{tag} removed while its subject stays"
        # Whatever --protect names survives whole, with its tags.
        for name, digest in req.protected:
            check_servable(tree, name, str(digest), set())
            for t in inv.repositories[name].tags.values():
                if t.current == digest:
                    assert tree.is_file(tag_dir(name, t.name) + "/current/link")
        # The predicted fingerprint is the tree's.
        predicted = inv.tree.without(sorted(self.decision.removed_paths, key=part_of))
        assert reference_digest(entries) == predicted


def examples(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


registries = st.lists(push, min_size=1, max_size=10)
PROTECTED_REFERRER = example(  # a protected referrer's tag stays when --untagged takes its
    # subject (#21.4)
    pushes=[("a", "t1", "image", [0], [0]), ("a", "t1", "referrer", [0], [0])],
    request=Request(images=[], untagged=["a"], prune=False, protected=[("a", "t1")]),
)


@examples(200)
@given(pushes=registries, request=requests)
@PROTECTED_REFERRER
def test_planner_invariants(pushes: list[Push], request: Request) -> None:
    """On a registry in memory: every property, on many registries."""
    tree = in_memory(pushes)
    inv = tree.inventory()
    assert inv.tree.digest == reference_digest(tree.entries())
    planned = Planned.of(inv, request)
    for t in planned.decision.targets:
        tree.remove(t.path)
    planned.check_what_remains(tree, tree.entries())


@examples(5)
@given(pushes=registries, request=requests)
@PROTECTED_REFERRER
def test_planner_invariants_on_disk(pushes: list[Push], request: Request) -> None:
    """On a registry on disk, through the filesystem's scan: it finds what the memory's
    events build (so the examples in memory stand for trees on disk), and every
    property holds of the tree left on disk."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_registry(root, pushes)
        storage = FsStorage.locate(root)
        inv = scan(storage)
        mem = in_memory(pushes)
        assert reference_entries(storage.v2) == mem.entries()
        from_memory = mem.inventory()
        assert inv == from_memory
        assert list(inv.tree.items()) == list(from_memory.tree.items())
        assert inv.tree.digest == reference_digest(reference_entries(storage.v2))
        planned = Planned.of(inv, request)
        remove_targets(root, planned.decision)  # type: ignore[arg-type]
        planned.check_what_remains(OnDisk(storage.v2), reference_entries(storage.v2))
