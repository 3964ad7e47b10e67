"""The only reader of the registry tree.

One walk with ``os.scandir`` yields every path with its fingerprint token (link
contents are read once, data files are only stat'ed). As the events come, each
path goes into the compact :class:`~regplan.tree.Tree` and the ones that mean
something (link files, blob data, upload folders) into the
:class:`~regplan.inventory.Inventory`; then each manifest digest is read and
parsed once.
"""

from __future__ import annotations

import functools
import logging
import os
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import attrs

from regplan import confine, fingerprint, manifests, parallel
from regplan.inventory import Inventory, Problem, ProblemCode, Repository, Tag, Upload
from regplan.layout import (
    NAME_MAX,
    Digest,
    Storage,
    blob_data,
    layer_dir,
    name_problem,
    parse_digest,
    printable,
    revision_dir,
    short_of,
    tag_dir,
)
from regplan.tree import Event, Parts, Tree, TreeBuilder, digest_events

log = logging.getLogger(__name__)

Progress = Callable[[int], None]
"""Called now and then with the number of paths seen so far."""


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False  # the share that owns it reports it


def _child_part(rel_dir: str, inherited: str | None, name: str, rel: str) -> tuple[str, str | None]:
    """(part of ``rel``, part its children inherit or None to decide per child).

    The same rule as layout.part_of, decided once per directory instead of per path.
    """
    if inherited is not None:
        return inherited, inherited
    if rel_dir == "":
        return rel, (rel if name not in ("blobs", "repositories") else None)
    if rel_dir == "blobs" or rel_dir.startswith("blobs/"):
        depth = rel.count("/")
        return rel, (rel if depth >= 2 else None)
    if name.startswith("_") and rel_dir != "repositories":
        return rel_dir, rel_dir  # inside repository rel_dir
    return rel, None


UNREADABLE_FILE = "f0"
"""The token of a file that could not be read (its problem is reported)."""
UNNAMEABLE = "n"
"""The token of an entry whose name a plan cannot hold (layout.name_problem): not walked."""
SPECIAL = "x"
"""The token of a FIFO, socket or device: never opened."""


def _why(e: OSError) -> str:
    """An OSError without the absolute path (the problem names the path)."""
    return e.strerror or str(e)


PART_END = ""
"""The token of the event that says every path of a part has been seen."""


@attrs.define
class Side:
    """What a walk notes besides its events."""

    mtimes: dict[str, float] = attrs.field(factory=dict)
    startedat: dict[str, str] = attrs.field(factory=dict)
    problems: list[Problem] = attrs.field(factory=list)
    blind: list[str] = attrs.field(factory=list)
    """Paths not seen into (see Inventory.blind)."""
    count: int = 0


def events(
    v2: str | os.PathLike[str],
    side: Side,
    *,
    progress: Progress | None = None,
    mtimes: bool = False,
    share: tuple[int, int] = (0, 1),
) -> Iterator[Event]:
    """Every path below ``v2`` with its token and part, depth first; never follows symlinks.

    The hot loop of regplan: ``os.scandir``, no pathlib, link files read with
    one ``open``/``read``/``close`` each, other files only ``stat``'ed. Depth
    first means a part's paths all come before its PART_END event, so a
    consumer can finish a part and forget its paths (see tree.digest_events).

    ``share=(k, n)`` walks the k-th of n disjoint shares: parts are dealt out
    by a hash of their name (so one repository or one blob shard never spans
    two shares, and a registry with a single namespace still splits evenly);
    the folders above the parts are walked by every share.
    """
    k, n = share
    stack: list[tuple[str, str, str | None]] = [(os.fspath(v2), "", None)]
    while stack:
        abs_dir, rel_dir, inherited = stack.pop()
        if not abs_dir:  # the end of a part's subtree
            yield rel_dir, PART_END, rel_dir
            continue
        try:
            with os.scandir(abs_dir) as it:
                children = list(it)
        except OSError as e:
            side.blind.append(rel_dir)
            side.problems.append(
                Problem(
                    path=rel_dir,
                    code=ProblemCode.UNREADABLE,
                    message=f"cannot list: {_why(e)}; kept with all it might hold",
                )
            )
            continue
        deal = n > 1 and inherited is None  # this folder's children start parts
        for entry in children:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            below: str | None
            if inherited is not None:
                part = below = inherited
            else:
                part, below = _child_part(rel_dir, inherited, name, rel)
                if deal and zlib.crc32(part.encode("utf-8", "surrogateescape")) % n != k:
                    if below is None and _is_dir(entry):  # parts further down may be ours
                        stack.append((entry.path, rel, None))
                    continue
            try:
                if not (name.isascii() and name.isprintable() and len(name) <= NAME_MAX):
                    why = name_problem(name)
                    if why is not None:  # never walked: a plan could not name what is inside
                        token = UNNAMEABLE
                        side.blind.append(rel)
                        side.problems.append(
                            Problem(
                                path=printable(rel),
                                code=ProblemCode.UNNAMEABLE,
                                message=f"name {why}: not walked; kept with all it might hold",
                            )
                        )
                        yield rel, token, part
                        if part == rel:
                            yield rel, PART_END, rel
                        continue
                if entry.is_dir(follow_symlinks=False):
                    yield rel, "d", part
                    if part == rel:
                        stack.append(("", rel, None))
                    stack.append((entry.path, rel, below))
                    continue
                if entry.is_symlink():
                    token = "s" + os.readlink(entry.path)
                    side.blind.append(rel)
                    side.problems.append(
                        Problem(
                            path=rel,
                            code=ProblemCode.SYMLINK,
                            message="symlink in registry storage (not followed, kept)",
                        )
                    )
                elif not entry.is_file(follow_symlinks=False):
                    token = SPECIAL
                    side.blind.append(rel)
                    mode = entry.stat(follow_symlinks=False).st_mode
                    side.problems.append(
                        Problem(
                            path=rel,
                            code=ProblemCode.SPECIAL_FILE,
                            message=f"{confine.kind(mode)} in registry storage (never read, kept)",
                        )
                    )
                elif name == "link":
                    content = confine.read_regular(entry.path, 4096)
                    token = "l" + content.decode("utf-8", "replace")
                    if mtimes or rel_dir.endswith("/current"):  # a tag's push time
                        side.mtimes[rel] = entry.stat(follow_symlinks=False).st_mtime
                else:
                    st = entry.stat(follow_symlinks=False)
                    token = f"f{st.st_size}"
                    if name == "data" and mtimes:
                        side.mtimes[rel] = st.st_mtime
                    elif name == "startedat":
                        text = confine.read_regular(entry.path, 200)
                        side.startedat[rel] = text.decode("utf-8", "replace").strip()
            except OSError as e:
                token = UNREADABLE_FILE
                side.problems.append(
                    Problem(
                        path=rel, code=ProblemCode.UNREADABLE, message=f"cannot read: {_why(e)}"
                    )
                )
            yield rel, token, part
            if part == rel:  # a file that is a part of its own (a top-level file)
                yield rel, PART_END, rel
        side.count += len(children)
        if progress is not None:
            progress(side.count)


def scan(
    storage: Storage,
    *,
    progress: Progress | None = None,
    created: bool = False,
    mtimes: bool = False,
    jobs: int | None = None,
) -> Inventory:
    """Walk the storage once and build the inventory.

    With ``created``, also read the image config of every tagged manifest for
    its ``created`` time (``--sort-by created``); with ``mtimes``, record the
    mtime of every link file and blob ``data`` (ages for ``--gc-min-age``).
    A large tree is walked in ``jobs`` shares at once (see parallel.jobs).
    """
    n = parallel.jobs(jobs, large=large(storage.v2))
    shares = parallel.run(functools.partial(_scan_share, storage.v2, mtimes), n, progress)
    return build(shares, functools.partial(read_files, os.fspath(storage.v2)), created, mtimes)


Reader = Callable[[Sequence[str], int], Iterator["bytes | OSError"]]
"""Reads blob files by path relative to the tree (at most ``limit`` bytes each, -1 for
all), yielding each one's bytes or why not, in order: the filesystem's read_files, or
an object store's GETs."""


def build(shares: list[_Share], read: Reader, created: bool, mtimes: bool) -> Inventory:
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


def digest(
    storage: Storage, *, progress: Progress | None = None, jobs: int | None = None
) -> fingerprint.TreeDigest:
    """The tree's digest as it is now, holding no more than one part's paths at a time
    in each share."""

    def share(k: int, n: int, progress: Progress | None) -> fingerprint.TreeDigest:
        return digest_events(events(storage.v2, Side(), progress=progress, share=(k, n)))

    n = parallel.jobs(jobs, large=large(storage.v2))
    return fingerprint.TreeDigest.join(parallel.run(share, n, progress))


def large(v2: str | os.PathLike[str]) -> bool:
    """Worth walking in shares: most of the 256 blob shards exist (hundreds of blobs)."""
    try:
        return len(os.listdir(os.path.join(v2, "blobs", "sha256"))) >= LARGE_SHARDS
    except OSError:
        return False


LARGE_SHARDS = 128


READERS = 8
"""Threads reading manifests once the disk is seen to be the bottleneck."""
COLD_READ = 50e-6
"""Seconds per read above which the files are coming from the disk, not the page cache
(measured here: about 11 us a file when cached, 200 us when not)."""


def read_files(
    top: str, paths: Sequence[str], limit: int = -1, batch: int = 1024
) -> Iterator[bytes | OSError]:
    """Each file's bytes (or why not), in order.

    The first batch is read here, timed. If those reads waited on the disk, the
    rest is read by a few threads at once (1.4x faster cold, measured); if they
    came from the page cache, threads would only queue on the GIL (3x slower
    warm), so the rest is read here too.
    """

    def read(path: str) -> bytes | OSError:
        try:
            return confine.read_regular(os.path.join(top, path), limit)
        except OSError as e:
            return e

    began = time.perf_counter()
    probe = [read(p) for p in paths[:batch]]
    cold = (time.perf_counter() - began) / max(1, len(probe)) > COLD_READ
    yield from probe
    rest = paths[batch:]
    if not cold:
        yield from map(read, rest)
        return
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for start in range(0, len(rest), batch):  # batches bound the futures held at once
            yield from pool.map(read, rest[start : start + batch])


@attrs.frozen(kw_only=True)
class _Share:
    """What one share of the walk found; a forked share sends it back pickled."""

    tree: Parts
    repos: dict[str, _RepoParts]
    blobs: dict[Digest, int]
    problems: list[Problem]
    blind: list[str]
    mtimes: dict[str, float]
    interned: dict[str, Digest]
    """Share 0's digest table (it ran in this process); empty for forked shares."""


def _scan_share(
    v2: str | os.PathLike[str], mtimes: bool, k: int, n: int, progress: Progress | None
) -> _Share:
    side = Side()
    evs = events(v2, side, progress=progress, mtimes=mtimes, share=(k, n))
    return share_of(evs, side, mtimes=mtimes, k=k)


def share_of(evs: Iterator[Event], side: Side, *, mtimes: bool, k: int = 0) -> _Share:
    """What a walk's events say (``side`` is the walk's own notes, filled as it goes)."""
    builder = _Builder(side, keep_mtimes=mtimes)
    tree = builder.consume(evs)
    return _Share(
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


KNOWN_FOLDERS = frozenset({"_manifests", "_layers", "_uploads"})
"""What distribution keeps in a repository's folder."""


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
    def join(cls, shares: list[_Share], *, keep_mtimes: bool) -> _Builder:
        """One builder from the shares' findings. Share 0 ran here: its digest objects
        are the ones kept; a forked share's came through pickle and are interned again."""
        builder = cls(Side(), keep_mtimes=keep_mtimes)
        builder.interned = shares[0].interned
        d = builder.digest
        for i, share in enumerate(shares):
            builder.blobs.update((d(b), size) for b, size in share.blobs.items())
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
            builder.side.mtimes.update(share.mtimes)
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
                if token[0] == "d":
                    self._repo_dir(repo, rest)
                if rel.endswith("/link"):  # a folder named link is a missing link file
                    self._link(repo, rest, rel, token)
                elif rel.endswith("/startedat"):
                    self._startedat(repo, rest, rel)
            elif token[0] == "f" and rel.endswith("/data") and part.startswith("blobs/"):
                self._data(rel, token)
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
            if rest not in KNOWN_FOLDERS and rest.startswith("_"):
                self.problem(
                    f"repositories/{repo}/{rest}",
                    ProblemCode.UNKNOWN_FOLDER,
                    "a folder regplan does not know (a newer registry's?): never removed "
                    "but with its whole repository",
                )
        elif n == 3 and parts[0] == "_manifests" and parts[1] == "tags":
            self.repos[repo].tags.setdefault(parts[2], _TagParts())
        elif n == 2 and parts[0] == "_uploads":
            self.repos[repo].uploads.setdefault(parts[1], None)

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
        if token[0] != "l":
            self.problem(path, ProblemCode.MISSING_LINK, "link file missing")
            return None
        content = token[1:]
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

    def _data(self, rel: str, token: str) -> None:
        """``blobs/<alg>/<ab>/<hex>/data``: a blob and its size."""
        parts = rel.split("/")
        if len(parts) != 5 or parts[2] != parts[3][:2]:
            return
        try:
            digest = self.digest(f"{parts[1]}:{parts[3]}")
        except ValueError:
            return
        self.blobs[digest] = int(token[1:])

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
        wanted: set[Digest] = set()
        for r in self.repos.values():
            wanted.update(r.revisions)
            wanted.update(t.current for t in r.tags.values() if t.current is not None)
        for digest in sorted(wanted - self.blobs.keys()):
            self.manifests[digest] = manifests.Manifest.unreadable("blob data missing")
        present = sorted(wanted & self.blobs.keys())
        paths = [blob_data(d) for d in present]
        for digest, path, data in zip(present, paths, read(paths, -1), strict=True):
            if isinstance(data, OSError):
                parsed = manifests.Manifest.unreadable(f"cannot read: {_why(data)}")
            else:
                parsed = manifests.parse(data, self.digest)
            if not parsed.known:
                self.problem(
                    path,
                    ProblemCode.UNREADABLE_MANIFEST,
                    f"manifest {short_of(digest)}: {parsed.error}; "
                    "kept with all it might reference",
                )
            self.manifests[digest] = parsed
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
                revisions=frozenset(r.revisions),
                layers=frozenset(r.layers),
                uploads={u: Upload(uuid=u, started_at=s) for u, s in sorted(r.uploads.items())},
                damaged=tuple(sorted(r.damaged)),
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
