"""From a walk's events to the inventory: the same for every storage.

A walk (the filesystem's scan, a bucket's listing) yields events (tokens.py) and
notes what it saw on the side (``Side``); ``share_of`` turns one share's events into
what they mean (tags, links, blobs, uploads), and ``build`` joins the shares, reads
each manifest once through the storage's reader, and freezes the inventory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import attrs

from regplan.scan import edges, entries, manifests, tokens
from regplan.scan.digests import Digests
from regplan.scan.entries import Entry
from regplan.scan.inventory import Inventory, Problem, ProblemCode, Repository, Tag, Upload
from regplan.scan.layout import (
    Digest,
    blob_data,
    layer_dir,
    parse_digest,
    revision_dir,
    short_of,
    tag_dir,
)
from regplan.scan.times import Times
from regplan.scan.tokens import Event
from regplan.scan.tree import Parts, Tree, TreeBuilder

log = logging.getLogger(__name__)


def strerror(e: OSError) -> str:
    """An OSError without the absolute path (the problem names the path)."""
    return e.strerror or str(e)


@attrs.define
class Side:
    """What a walk notes besides its events."""

    mtimes: Times = attrs.field(factory=Times)
    startedat: dict[str, str] = attrs.field(factory=dict)
    problems: list[Problem] = attrs.field(factory=list)
    blind: list[str] = attrs.field(factory=list)
    """Paths not seen into (see Inventory.blind)."""
    count: int = 0


Reader = Callable[[Sequence[str], int], Iterator["bytes | OSError"]]
"""Reads blob files by path relative to the tree (at most ``limit`` bytes each, -1 for
all), yielding each one's bytes or why not, in order: the filesystem's read_files, or
an object store's GETs."""


def build(shares: list[Share], read: Reader, created: bool, mtimes: bool) -> Inventory:
    """The inventory from the shares of a walk, reading each manifest once through ``read``
    (any storage: the walk's events are the same for a filesystem and a bucket).
    Empties ``shares``: each share's findings are freed once they are joined."""
    builder = _Builder.join(shares, keep_mtimes=mtimes)
    tree = Tree.join(share.tree for share in shares)
    count = len(shares)
    shares.clear()  # what the shares held is the builder's and the tree's now: freed here
    builder.check_links()
    builder.read_manifests(read)
    if created:
        builder.read_created(read)
    inv = builder.build(tree)
    log.debug(
        "scanned %d paths in %d share(s): %d repositories, %d blobs, %d manifests, %d problems",
        len(inv.tree),
        count,
        len(inv.repositories),
        len(inv.blobs),
        len(inv.manifests),
        len(inv.problems),
    )
    return inv


@attrs.frozen(kw_only=True)
class Share:
    """What one share of the walk found; a forked share sends it back pickled."""

    tree: Parts
    repos: dict[str, _RepoParts]
    blobs: dict[Digest, int]
    problems: list[Problem]
    blind: list[str]
    mtimes: Times
    interned: dict[str, Digest]
    """Share 0's digest table (it ran in this process); empty for forked shares."""


def share_of(evs: Iterator[Event], side: Side, *, mtimes: bool, k: int = 0) -> Share:
    """What a walk's events say (``side`` is the walk's own notes, filled as it goes)."""
    builder = _Builder(side, keep_mtimes=mtimes)
    tree = builder.consume(evs)
    return Share(
        tree=tree,
        repos=builder.repos,
        blobs=builder.blobs,
        problems=builder.problems,
        blind=side.blind,
        mtimes=side.mtimes,
        interned=builder.interned if k == 0 else {},
    )


@attrs.define
class _TagParts:
    current: Digest | None = None
    linked: bool = False
    """Whether ``current/link`` was seen (its absence is a problem)."""
    history: set[Digest] = attrs.field(factory=set)
    pushed_at: float = 0.0


@attrs.define
class _RepoParts:
    tags: dict[str, _TagParts] = attrs.field(factory=dict)
    revisions: set[Digest] = attrs.field(factory=set)
    layers: set[Digest] = attrs.field(factory=set)
    uploads: dict[str, str | None] = attrs.field(factory=dict)
    damaged: list[str] = attrs.field(factory=list)
    unknown: list[str] = attrs.field(factory=list)


class _Builder:
    def __init__(self, side: Side, *, keep_mtimes: bool) -> None:
        self.side = side
        self.keep_mtimes = keep_mtimes
        self.problems: list[Problem] = side.problems
        self.repos: dict[str, _RepoParts] = {}
        self.blobs: dict[Digest, int] = {}
        self.manifests: dict[Digest, manifests.Manifest] = {}
        self.created: dict[Digest, str] = {}
        self.interned: dict[str, Digest] = {}
        self.unknown_folders: set[str] = set()
        """Folders reported as unknown: what they hold is not reported again."""

    def digest(self, text: str) -> Digest:
        """One Digest object per digest in the whole scan (the same blob is named
        by many paths, links and manifests)."""
        found = self.interned.get(text)
        if found is None:
            found = parse_digest(text)
            self.interned[found] = found  # the Digest is its own key: no second string
        return found

    def problem(self, path: str, code: ProblemCode, message: str) -> None:
        self.problems.append(Problem(path=path, code=code, message=message))

    @classmethod
    def join(cls, shares: list[Share], *, keep_mtimes: bool) -> _Builder:
        """One builder from the shares' findings. Share 0 ran here: its digest objects
        are the ones kept; a forked share's came through pickle and are interned again."""
        builder = cls(Side(), keep_mtimes=keep_mtimes)
        builder.interned = shares[0].interned
        builder.blobs = shares[0].blobs  # taken, not copied: share 0's digests are ours
        builder.side.mtimes = shares[0].mtimes
        d = builder.digest
        for i, share in enumerate(shares):
            if i > 0:
                builder.blobs.update((d(b), size) for b, size in share.blobs.items())
                builder.side.mtimes.update(share.mtimes)
            for name, r in share.repos.items():
                if i > 0:
                    r.revisions = {d(x) for x in r.revisions}
                    r.layers = {d(x) for x in r.layers}
                    for t in r.tags.values():
                        t.current = None if t.current is None else d(t.current)
                        t.history = {d(x) for x in t.history}
                builder.repos[name] = r
            builder.problems.extend(share.problems)
            builder.side.blind.extend(share.blind)
        return builder

    def consume(self, evs: Iterator[Event]) -> Parts:
        """Put every event into the tree and the ones that mean something into the model.

        Inside a repository the walk's part is the repository's folder, so the
        repository's name and the path within it come without splitting the path.
        """
        tree = TreeBuilder()
        for rel, token, part in tree.take(evs):
            if part == rel:
                continue
            if part.startswith("repositories/"):
                repo, rest = part[13:], rel[len(part) + 1 :]
                directory = tokens.is_directory(token)
                if directory:
                    self._repo_dir(repo, rest)
                if rel.endswith("/link"):  # a folder named link is a missing link file
                    self._link(repo, rest, rel, token)
                elif rel.endswith("/startedat"):
                    self._startedat(repo, rest, rel)
                self._entry(repo, rest, rel, token, directory=directory)
            elif part.startswith("blobs/"):
                size = tokens.file_size(token)
                if size is None:
                    continue
                if rel.endswith("/data"):
                    self._data(rel, size)
                elif entries.stands_for(rel.rpartition("/")[2]) == "data":
                    self._leftover(rel)  # a blob folder holding only this is no blob
        return tree.parts()

    def check_links(self) -> None:
        """Once every share is in: tags without a current link, links without blob data."""
        self._missing_links()
        self._missing_blobs()

    def _repo(self, name: str) -> _RepoParts:
        r = self.repos.get(name)
        if r is None:
            r = self.repos[name] = _RepoParts()
        return r

    def _repo_dir(self, repo: str, rest: str) -> None:
        """A folder inside a repository: the repository, a tag, an upload."""
        parts = rest.split("/")
        n = len(parts)
        if n == 1:
            self._repo(repo)
        elif n == 3 and parts[0] == "_manifests" and parts[1] == "tags":
            self.repos[repo].tags.setdefault(parts[2], _TagParts())
        elif n == 2 and parts[0] == "_uploads":
            self.repos[repo].uploads.setdefault(parts[1], None)

    def _entry(self, repo: str, rest: str, rel: str, token: str, *, directory: bool) -> None:
        """Report what distribution does not keep here (its repository fails closed), and
        the temporary files of writes it did not finish."""
        if not directory and tokens.file_size(token) is None and not rel.endswith("/link"):
            return  # a symlink, a special file, an unnameable name: reported as such
        if self.unknown_folders and rel.rpartition("/")[0] in self.unknown_folders:
            if directory:
                self.unknown_folders.add(rel)
            return
        found = entries.entry(rest, directory=directory)
        if found is Entry.KNOWN:
            return
        if found is Entry.LEFTOVER:
            self._leftover(rel)
            return
        if directory:
            self.unknown_folders.add(rel)
        self._repo(repo).unknown.append(rel)
        top = "/" not in rest and directory
        self.problem(
            rel,
            ProblemCode.UNKNOWN_FOLDER if top else ProblemCode.UNKNOWN_ENTRY,
            f"{'a folder' if directory else 'a file'} distribution does not keep here (a "
            f"newer registry's?): kept, and nothing {repo} might reference is removed",
        )

    def _leftover(self, rel: str) -> None:
        final = entries.stands_for(rel.rpartition("/")[2])
        self.problem(
            rel,
            ProblemCode.LEFTOVER_TEMP,
            f"a temporary file the registry left when it stopped writing a {final} "
            "(distribution v3.1 writes, then renames): never read as one; "
            "--leftovers-older-than AGE removes it",
        )

    def _link(self, repo: str, rest: str, rel: str, token: str) -> None:
        parts = rest.split("/")
        n = len(parts)
        r = self.repos[repo]
        if parts[0] == "_layers":
            if n == 4:
                self._linked(r, r.layers, rel, token, parts[1], parts[2])
        elif parts[0] != "_manifests" or n < 5:
            return
        elif parts[1] == "revisions":
            if n == 5:
                self._linked(r, r.revisions, rel, token, parts[2], parts[3])
        elif parts[1] != "tags":
            return
        elif n == 5 and parts[3] == "current":
            t = r.tags[parts[2]]
            t.linked = True
            t.current = self.link(rel, token)
            mtimes = self.side.mtimes  # a tag's push time; kept by path only when asked
            t.pushed_at = mtimes.get(rel, 0.0) if self.keep_mtimes else mtimes.pop(rel, 0.0)
        elif n == 7 and parts[3] == "index":
            history = r.tags[parts[2]].history
            self._linked(r, history, rel, token, parts[4], parts[5])

    def _linked(
        self, r: _RepoParts, into: set[Digest], rel: str, token: str, algorithm: str, encoded: str
    ) -> None:
        """The link of a ``<alg>/<hex>/`` folder: its digest goes ``into`` the set.

        A link that is there but empty, corrupt or naming another digest is a
        problem and damages its repository; the digest still counts. (A folder
        without its link is what distribution leaves when a manifest is deleted
        through the API: deleted, not a problem; it never comes here.)
        """
        try:
            digest = self.digest(f"{algorithm}:{encoded}")
        except ValueError:
            return
        if self.link(rel, token, digest) is None:
            r.damaged.append(rel)
        into.add(digest)

    def link(self, path: str, token: str, expected: Digest | None = None) -> Digest | None:
        """The digest a link file names, or None (with a problem) when it is unusable."""
        content = tokens.link_content(token)
        if content is None:
            self.problem(path, ProblemCode.MISSING_LINK, "link file missing")
            return None
        if not content.strip():
            self.problem(path, ProblemCode.EMPTY_LINK, "empty link file")
            return None
        try:
            digest = self.digest(content)
        except ValueError:
            self.problem(path, ProblemCode.CORRUPT_LINK, f"corrupt link: {content[:80]!r}")
            return None
        if expected is not None and digest != expected:
            self.problem(
                path, ProblemCode.LINK_MISMATCH, f"link names {digest} but its path says {expected}"
            )
            return None
        return digest

    def _startedat(self, repo: str, rest: str, rel: str) -> None:
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "_uploads":
            self.repos[repo].uploads[parts[1]] = self.side.startedat.pop(rel, None)

    def _data(self, rel: str, size: int) -> None:
        """``blobs/<alg>/<ab>/<hex>/data``: a blob and its size."""
        parts = rel.split("/")
        if len(parts) != 5 or parts[2] != parts[3][:2]:
            return
        try:
            digest = self.digest(f"{parts[1]}:{parts[3]}")
        except ValueError:
            return
        self.blobs[digest] = size

    def _missing_links(self) -> None:
        for repo, r in self.repos.items():
            for tag, t in r.tags.items():
                if not t.linked:
                    self.problem(
                        f"{tag_dir(repo, tag)}/current/link",
                        ProblemCode.MISSING_LINK,
                        "link file missing",
                    )

    def _missing_blobs(self) -> None:
        """Links whose blob has no data (paths are built only for those)."""
        blobs = self.blobs
        for repo, r in self.repos.items():
            for tag, t in r.tags.items():
                current = t.current
                if current is not None and current not in blobs:
                    self.problem(
                        f"{tag_dir(repo, tag)}/current/link",
                        ProblemCode.MISSING_BLOB,
                        f"tag {repo}:{tag} points to {current} has no blob data",
                    )
            for d in sorted(d for d in r.revisions if d not in blobs):
                self.problem(
                    f"{revision_dir(repo, d)}/link",
                    ProblemCode.MISSING_BLOB,
                    f"revision {d} has no blob data",
                )
            for d in sorted(d for d in r.layers if d not in blobs):
                self.problem(
                    f"{layer_dir(repo, d)}/link",
                    ProblemCode.MISSING_BLOB,
                    f"layer link {d} has no blob data",
                )

    def read_manifests(self, read: Reader) -> None:
        """Each manifest a revision or tag names: its facts from the edges cache where the
        walk proves them (edges.py), else read through ``read`` and parsed."""
        wanted: set[Digest] = set()
        for r in self.repos.values():
            wanted.update(r.revisions)
            wanted.update(t.current for t in r.tags.values() if t.current is not None)
        for digest in sorted(wanted - self.blobs.keys()):
            self.manifests[digest] = manifests.Manifest.unreadable("blob data missing")
        present = sorted(wanted & self.blobs.keys())
        cache = edges.of(read)
        found = cache.proven([(d, blob_data(d), self.blobs[d]) for d in present], self.digest)
        todo = [d for d in present if d not in found]
        paths = [blob_data(d) for d in todo]
        for digest, path, data in zip(todo, paths, read(paths, -1), strict=True):
            if isinstance(data, OSError):
                parsed = manifests.Manifest.unreadable(f"cannot read: {strerror(data)}")
            else:
                parsed = manifests.parse(data, self.digest)
                cache.learn(digest, data, parsed)
            if not parsed.known:
                self.problem(
                    path,
                    ProblemCode.UNREADABLE_MANIFEST,
                    f"manifest {short_of(digest)}: {parsed.error}; "
                    "kept with all it might reference",
                )
            found[digest] = parsed
        cache.save()
        self.manifests.update((d, found[d]) for d in present)  # in digest order, as before
        self._missing_children()

    def _missing_children(self) -> None:
        for name, r in self.repos.items():
            for digest in sorted(r.revisions):
                m = self.manifests.get(digest)
                if m is None:
                    continue
                for child in (c for c in m.children if c not in r.revisions):
                    self.problem(
                        revision_dir(name, digest),
                        ProblemCode.MISSING_CHILD,
                        f"index {short_of(digest)} lists {short_of(child)}, "
                        f"not a revision of {name}",
                    )

    def read_created(self, read: Reader) -> None:
        """Config ``created`` of each tagged image; an index takes its newest child's."""
        tagged = {t.current for r in self.repos.values() for t in r.tags.values() if t.current}
        images: dict[Digest, str] = {}

        def of_image(d: Digest) -> str | None:
            m = self.manifests.get(d)
            if m is None or m.config is None or m.config not in self.blobs:
                return None
            if d not in images:
                data = next(read([blob_data(m.config)], 1 << 20))
                value = None if isinstance(data, OSError) else manifests.created(data)
                images[d] = value or ""
            return images[d] or None

        for d in sorted(tagged):
            m = self.manifests.get(d)
            if m is None:
                continue
            times = [of_image(c) for c in m.children] if m.children else [of_image(d)]
            known = [t for t in times if t]
            if known:
                self.created[d] = max(known)

    def build(self, tree: Tree) -> Inventory:
        """The frozen inventory; each repository's working sets are dropped as it is
        frozen (both at once would be the scan's peak)."""
        repositories: dict[str, Repository] = {}
        for name in sorted(self.repos):
            r = self.repos.pop(name)
            repositories[name] = Repository(
                name=name,
                tags={
                    tag: Tag(
                        name=tag,
                        current=t.current,
                        history=tuple(sorted(t.history)),
                        pushed_at=t.pushed_at,
                    )
                    for tag, t in sorted(r.tags.items())
                },
                revisions=Digests(r.revisions),
                layers=Digests(r.layers),
                uploads={u: Upload(uuid=u, started_at=s) for u, s in sorted(r.uploads.items())},
                damaged=tuple(sorted(r.damaged)),
                unknown=tuple(sorted(r.unknown)),
            )
        return Inventory(
            repositories=repositories,
            blobs=self.blobs,
            manifests=self.manifests,
            problems=tuple(sorted(set(self.problems))),
            tree=tree,
            mtimes=self.side.mtimes,
            created=self.created,
            blind=tuple(sorted(set(self.side.blind))),  # shares all walk the folders above parts
        )
