"""Small tools shared by tests: deterministic keys and plans, tree edits, content hashes."""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from regplan import workflow
from regplan.decide.selection import ImageSpec, Selection
from regplan.plans import signing
from regplan.plans.plan import Plan
from regplan.scan import fingerprint
from regplan.scan.inventory import Inventory
from regplan.scan.layout import Digest, blob_dir, group_by_part
from regplan.scan.tree import Tree
from regplan.storage.fs.fsops import Disk
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.fs.fsstore import FsStore
from regplan.storage.location import Location
from regplan.storage.seam import Store

T = TypeVar("T")

NOW = datetime(2026, 11, 28, 10, 15, 0, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def selection(
    images: tuple[str, ...] = (), untagged: tuple[str, ...] = (), prune: bool = False
) -> Selection:
    return Selection(
        images=tuple(ImageSpec.parse(i) for i in images), untagged=untagged, prune=prune
    )


def drafted(
    *,
    storage: Location,
    selection: Selection,
    argv: Sequence[str] = (),
    signer: str = "test-planner",
) -> Plan:
    """``workflow.make_plan`` held whole (its spool read and dropped)."""
    with workflow.make_plan(
        storage=storage, selection=selection, argv=argv, key=KEY, signer=signer, now=NOW
    ) as draft:
        return workflow.whole(draft)


def make_plan(root: Path, sel: Selection, *, stable_root: str | None = None) -> Plan:
    """A signed plan; with ``stable_root`` the temp path is replaced so bytes are stable."""
    storage = FsStorage.locate(root)
    argv = ["regplan", "plan", "--root", stable_root or str(root)]
    argv += [f"--image={i}" for i in sel.images] + [f"--untagged={u}" for u in sel.untagged]
    argv += ["--prune"] if sel.prune else []
    plan = drafted(storage=storage, selection=sel, argv=argv)
    if stable_root is None:
        return plan
    unsigned = attrs.evolve(plan, root=stable_root, signatures=())
    return signing.sign(unsigned, KEY, role="planner", signer="test-planner", now=NOW)


def pem(key: Ed25519PrivateKey) -> bytes:
    """A private key file's bytes, as keygen writes it."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_pub(key: Ed25519PrivateKey, path: Path) -> Path:
    import base64

    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    path.write_text(f"{signing.PUBLIC_PREFIX} {base64.b64encode(raw).decode()} test\n")
    return path


def write_keys(base: Path) -> tuple[Path, Path]:
    """The test key as a private key file (``base/k``, mode 600) and its ``.pub``."""
    key = base / "k"
    key.write_bytes(pem(KEY))
    key.chmod(0o600)
    return key, write_pub(KEY, base / "k.pub")


def content_hashes(root: Path) -> dict[str, str]:
    """Every file's SHA-256, every directory, symlink and special file, independent of
    regplan's code (a FIFO is never opened)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            mode = os.lstat(p).st_mode
            if stat.S_ISLNK(mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISDIR(mode):
                out[rel + "/"] = "dir"
            elif not stat.S_ISREG(mode):
                out[rel] = f"special:{stat.S_IFMT(mode):o}"
            else:
                with open(p, "rb") as fh:
                    out[rel] = hashlib.sha256(fh.read()).hexdigest()
    return out


def remove_targets(root: Path, plan: Plan) -> None:
    """Delete a plan's targets outright (tests only; regplan itself moves them)."""
    import shutil

    v2 = FsStorage.locate(root).v2
    for t in plan.targets:
        p = v2 / t.path
        if p.is_dir():
            shutil.rmtree(p)
        elif t.kind.is_file:
            p.unlink()


LEFTOVER = ".0b0e3a6e-7a7c-4a1e-9c1e-0123456789ab.tmp"
"""The suffix distribution v3.1 gives a file it writes before renaming it."""


def plant_leftovers(root: Path, mtime: float | None = None) -> list[str]:
    """The files a v3.1 registry killed mid-write leaves in the demo tree: a tag's
    ``current/link`` being rewritten (beside the link) and a blob's ``data`` never
    renamed (alone in its folder), in the first tag of the tree. Paths relative to the
    v2 root."""
    v2 = FsStorage.locate(root).v2
    current = min(v2.glob("repositories/**/_manifests/tags/*/current"))
    rels = [
        f"{current.relative_to(v2).as_posix()}/link{LEFTOVER}",
        f"blobs/sha256/ee/{'ee' * 32}/data{LEFTOVER}",
    ]
    for rel, body in zip(rels, (b"sha256:" + b"0" * 64, b"half a blob"), strict=True):
        (v2 / rel).parent.mkdir(parents=True, exist_ok=True)
        (v2 / rel).write_bytes(body)
        if mtime is not None:
            os.utime(v2 / rel, (mtime, mtime))
    return rels


def docker_hashes(root: Path) -> dict[str, str]:
    """content_hashes of ``root/docker`` only (regplan-state/ is regplan's own)."""
    return content_hashes(root / "docker")


def write_plan_file(root: Path, sel: Selection, path: Path) -> Plan:
    plan = make_plan(root, sel)
    workflow.write_plan(plan, path)
    return plan


def _nameable(name: str) -> bool:
    """A name a plan can hold: UTF-8, no control character, at most 255 bytes."""
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return size <= 255 and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)


def reference_entries(v2: Path) -> dict[str, str]:
    """Every path below ``v2`` with its fingerprint token, read with os.walk: an
    oracle for the scan's own walk (tokens: ``d``, ``l<content>``, ``f<size>``,
    ``s<target>``; ``n`` for an entry whose name a plan cannot hold, not walked
    into; ``x`` for a FIFO, socket or device)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(v2):
        rel_dir = os.path.relpath(dirpath, v2)
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if not _nameable(name):
                out[rel] = "n"
            elif os.path.islink(p):
                out[rel] = "s" + os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = "d"
            elif not stat.S_ISREG(os.lstat(p).st_mode):
                out[rel] = "x"
            elif name == "link":
                with open(p, "rb") as fh:
                    out[rel] = "l" + fh.read(4096).decode("utf-8", "replace")
            else:
                out[rel] = f"f{os.path.getsize(p)}"
        dirnames[:] = [d for d in dirnames if _nameable(d)]
    return out


def reference_digest(entries: dict[str, str]) -> fingerprint.TreeDigest:
    """The fingerprint of ``{path: token}`` straight from its definition: per part,
    SHA-256 over the sorted ``path NUL token LF`` lines."""
    parts = {}
    for part, paths in group_by_part(entries).items():
        lines = sorted(f"{p}\0{entries[p]}\n" for p in paths)
        parts[part] = hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()
    return fingerprint.TreeDigest.of_parts(parts, len(entries))


NOBODY = 65534


def as_nobody(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a forked child as an unprivileged user and return its result.

    Root reads and lists what mode 000 hides, so the unreadable-storage tests
    drop privileges the way an operator's service account has none. Not root:
    ``fn`` runs here as it is. An exception in the child comes back as
    ``ChildError`` with its type and message.
    """
    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as e:  # noqa: BLE001 (everything goes back to the parent)
            payload = pickle.dumps(("err", f"{type(e).__name__}: {e}"))
        with os.fdopen(w, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)  # noqa: S301 (our own child's bytes)
    if kind == "err":
        raise ChildError(value)
    result: T = value
    return result


class ChildError(Exception):
    """What an ``as_nobody`` function raised, as ``Type: message``."""


def hide(path: Path) -> None:
    """Mode 000: an unprivileged walk cannot list or read it."""
    path.chmod(0)


def shared_tmp() -> Path:
    """A temp folder an unprivileged child can reach (pytest's tmp_path is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="regplan-test-"))
    path.chmod(0o755)
    return path


def remove_tree(path: Path) -> None:
    """rmtree after giving back every mode a test took away."""
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = Path(dirpath) / d
            if not p.is_symlink():
                p.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def sign_raw(raw: dict[str, Any], key: Ed25519PrivateKey = KEY) -> dict[str, Any]:
    """Re-sign a raw plan object as it stands (any edit): what a holder of a trusted
    key could produce, for tests of what a validly signed plan may still not do."""
    meta = {
        "keyid": signing.keyid_of(key.public_key()),
        "role": "planner",
        "signer": "attacker",
        "signed_at": "2026-11-28T10:15:00Z",
    }
    message = signing._message(signing.raw_body_digest(raw), meta)
    sig = base64.b64encode(key.sign(message)).decode()
    return raw | {"signatures": [meta | {"sig": sig}]}


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount`` (another filesystem, or a disk that fills
    up) for the block; the test is skipped where mounting is not allowed."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


class FaultyDisk(Disk):
    """A disk whose ``at``-th rename (or write) fails with ``err``."""

    def __init__(self, err: int, *, rename_at: int = 0, write_at: int = 0) -> None:
        self.err, self.rename_at, self.write_at = err, rename_at, write_at
        self.renames = self.writes = 0

    def _fail(self) -> NoReturn:
        raise OSError(self.err, f"injected {errno.errorcode[self.err]}")

    def rename(self, src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
        self.renames += 1
        if self.renames == self.rename_at:
            self._fail()
        super().rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def write(self, fd: int, data: memoryview) -> int:
        self.writes += 1
        if self.writes == self.write_at:
            self._fail()
        return super().write(fd, data)


def on_disk(disk: Disk) -> Callable[[Location], Store]:
    """An opener (apply.apply_plan's) of filesystem stores whose every rename and write
    goes through ``disk``."""

    def opener(storage: Location) -> Store:
        assert isinstance(storage, FsStorage)
        return FsStore(storage, disk)

    return opener


def alone() -> None:
    """Before a fork: wait a moment for threads an earlier test left ending (a served
    request's); then no other thread may be alive (a fork copies only this one, and a
    lock another thread held would stay held in the child)."""
    import threading

    for t in threading.enumerate():
        if t is not threading.current_thread():
            t.join(timeout=2)
    assert threading.active_count() == 1, threading.enumerate()


@contextlib.contextmanager
def forked(fn: Callable[[BinaryIO], object]) -> Iterator[tuple[int, BinaryIO]]:
    """``fn(out)`` runs in a child forked from this warm process (no interpreter to
    start, nothing patched); the block gets its pid and a pipe reading what it writes
    to ``out``. The child leaves with ``os._exit`` (never running pytest's exit
    handlers) when ``fn`` returns; the block's end SIGKILLs and reaps it if need be."""
    read_fd, write_fd = os.pipe()
    alone()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 0
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb", buffering=0) as out:
                fn(out)
        except BaseException:  # noqa: BLE001 - shown, and the exit status says so
            os.write(2, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as said:
            yield pid, said
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _manifest_refs(v2: Path, digest: str) -> tuple[list[str], list[str]] | None:
    """(config and layer blobs, child manifests) of a manifest, by plain json (apart from
    regplan.scan); None when its blob cannot be read as a manifest."""
    algo, _, hexd = digest.partition(":")
    try:
        doc = json.loads((v2 / f"blobs/{algo}/{hexd[:2]}/{hexd}/data").read_bytes())
    except (OSError, ValueError):
        return None
    blobs = [d["digest"] for d in (doc.get("config"), *doc.get("layers", [])) if d]
    return blobs, [m["digest"] for m in doc.get("manifests", [])]


def repositories_on_disk(v2: Path) -> list[str]:
    """Every repository name under ``v2/repositories`` (a folder holding ``_manifests``
    or ``_layers``; repositories nest), sorted."""
    top = v2 / "repositories"
    found = {p.parent for p in top.glob("**/_manifests")} | {
        p.parent for p in top.glob("**/_layers")
    }
    return sorted(p.relative_to(top).as_posix() for p in found)


def images_on_disk(
    v2: Path,
) -> tuple[dict[tuple[str, str], tuple[str, float]], set[tuple[str, str]]]:
    """What the tree holds, read with plain file calls: every tag as (repo, tag) ->
    (the digest its ``current/link`` names, that link's mtime: its push time), and every
    revision as (repo, digest)."""
    tags: dict[tuple[str, str], tuple[str, float]] = {}
    revisions: set[tuple[str, str]] = set()
    for repo in repositories_on_disk(v2):
        manifests = v2 / "repositories" / repo / "_manifests"
        for link in sorted(manifests.glob("tags/*/current/link")):
            tags[(repo, link.parent.parent.name)] = (link.read_text(), link.stat().st_mtime)
        for link in sorted(manifests.glob("revisions/*/*/link")):
            revisions.add((repo, f"{link.parent.parent.name}:{link.parent.name}"))
    return tags, revisions


def unwhole(v2: Path, repo: str, digest: str) -> list[str]:
    """What the image ``repo@digest`` lacks to be served (empty: it is whole): its
    revision link and manifest blob, each config and layer blob with the repository's
    layer link, and each index child the same way, read with plain json."""
    out: list[str] = []
    todo, seen = [digest], set()
    while todo:
        d = todo.pop()
        if d in seen:
            continue
        seen.add(d)
        algo, _, hexd = d.partition(":")
        need = [f"repositories/{repo}/_manifests/revisions/{algo}/{hexd}/link"]
        need.append(f"blobs/{algo}/{hexd[:2]}/{hexd}/data")
        refs = _manifest_refs(v2, d)
        if refs is not None:
            blobs, children = refs
            for b in blobs:
                ba, _, bh = b.partition(":")
                need += [
                    f"blobs/{ba}/{bh[:2]}/{bh}/data",
                    f"repositories/{repo}/_layers/{ba}/{bh}/link",
                ]
            todo += children
        out += [f"{repo}@{digest[:19]} lacks {p}" for p in need if not (v2 / p).is_file()]
    return out


def broken_images(v2: Path) -> list[str]:
    """Every tag and revision of the tree that is not whole (``unwhole``), each with
    what it lacks: empty when the registry can serve everything the tree names."""
    tags, revisions = images_on_disk(v2)
    out = [f"{r}:{t}: {m}" for (r, t), (d, _) in sorted(tags.items()) for m in unwhole(v2, r, d)]
    return out + [m for r, d in sorted(revisions) for m in unwhole(v2, r, d)]


def unreferenced_blobs(digests: Sequence[Digest]) -> Inventory:
    """A storage of these blobs (100 bytes each) that nothing references: a --gc plan
    removes each."""
    entries = {"blobs": "d", "repositories": "d"}
    for d in digests:
        folder = blob_dir(d)
        for i in range(1, folder.count("/") + 1):
            entries["/".join(folder.split("/")[:i])] = "d"
        entries[folder] = "d"
        entries[f"{folder}/data"] = "f100"
    return Inventory(
        repositories={},
        blobs=dict.fromkeys(digests, 100),
        manifests={},
        problems=(),
        tree=Tree.from_entries(entries),
    )
