"""Prove through the running registry that every kept image is whole, and (given the
plan) that what the plan removed is gone.

For each tag: the manifest by tag with every manifest type accepted, an index's
children by digest (each body checked against its digest), every config and
layer blob by HEAD. Manifests shared by many tags are checked once. The plan's
removed tags, revisions, layer links and blobs must not be served any more: one
that still is, and is not back in the storage, means the registry's caches are
stale; one that is back (a tag whose link names a manifest again, a revision or
layer link, a blob) was pushed again since, and is said so.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import attrs

from regplan.changes.records import ApplyRecord
from regplan.decide.selection import ImageSpec
from regplan.plans.plan import Plan, TargetKind, Verdict
from regplan.plans.planfile import Source, source
from regplan.progress import Progress
from regplan.registry.regclient import RegistryClient
from regplan.scan.inventory import Inventory
from regplan.scan.layout import Digest, split_repo

T = TypeVar("T")

WORKERS = 8
"""Requests in flight at once: enough to hide latency, few enough for any registry."""


@attrs.frozen(kw_only=True)
class Failure:
    image: str
    """``repo:tag`` (or ``repo@digest``) that is broken, or the removed thing still served."""
    what: str


@attrs.frozen(kw_only=True)
class Report:
    images: int
    manifests: int
    blobs: int
    failures: tuple[Failure, ...]
    removed_checked: int = 0
    still_served: tuple[Failure, ...] = ()
    """Removed, not back in the storage, and still served: the registry's caches."""
    pushed_again: tuple[Failure, ...] = ()
    """Removed, and served because it is in the storage again: pushed since."""
    plan_note: str = ""
    """With --plan: what the storage's history says of the plan (applied, rolled back,
    never applied here), which decides whether what it removed is asked for."""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.still_served


@attrs.frozen(kw_only=True)
class Gone:
    """Something the plan removed, and how to ask the registry for it."""

    kind: str  # "manifest" or "blob"
    repo: str
    ref: str
    label: str
    removed: str = ""
    """A tag's: the manifest it named when the plan removed it (from the plan's records)."""


def images_in(inventory: Inventory, specs: Sequence[ImageSpec]) -> list[tuple[str, str]]:
    """Every (repository, tag) of the storage, or those ``specs`` (globs) select, sorted."""
    return [
        (name, tag)
        for name, repo in sorted(inventory.repositories.items())
        for tag in sorted(repo.tags)
        if not specs
        or any(
            fnmatch.fnmatchcase(name, s.repo) and fnmatch.fnmatchcase(tag, s.tag or "*")
            for s in specs
        )
    ]


PRESENT = frozenset({200, 301, 302, 303, 307, 308})
"""Answers that mean "served": 200, or a redirect to the storage (the s3 and azure
drivers redirect blob reads by default)."""


@attrs.frozen(kw_only=True)
class PlanState:
    note: str
    applied: bool
    """Whether what the plan removes should be gone (applied or purged here)."""


def plan_state(plan_id: str, applies: Sequence[ApplyRecord]) -> PlanState:
    """What the storage's history says of ``plan_id``: only an applied (or purged) plan's
    targets must be gone; a plan never applied or rolled back is said to be so."""
    mine = [r for r in applies if r.plan_id == plan_id]
    if not mine:
        return PlanState(note=f"plan {plan_id} was never applied to this storage", applied=False)
    last = mine[-1]
    state = last.state.value
    if state in ("applied", "purged", "purging"):
        return PlanState(note=f"plan {plan_id} is {state} ({last.apply_id})", applied=True)
    if state in ("rolled-back", "rolling-back"):
        return PlanState(
            note=f"plan {plan_id} was rolled back ({last.apply_id}): what it removed is back",
            applied=False,
        )
    return PlanState(
        note=f"apply {last.apply_id} of plan {plan_id} is unfinished: run the same apply "
        f"again, or regplan rollback {last.apply_id}",
        applied=False,
    )


def verdict(report: Report, applies: Sequence[ApplyRecord]) -> str:
    """One line for a failed check: how many, what to do, how to undo the latest apply."""
    parts = []
    if report.failures:
        parts.append(f"{len(report.failures)} image(s) broken")
    if report.still_served:
        parts.append(
            f"{len(report.still_served)} removed thing(s) still served: the registry's "
            "caches are stale (restart the registry, or flush its redis cache)"
        )
    latest = next((r for r in reversed(applies) if r.state.value == "applied"), None)
    if latest is not None and report.failures:
        parts.append(f"undo the latest apply with: regplan rollback {latest.apply_id}")
    return "; ".join(parts)


def removed_by(plan: Plan | Source) -> list[Gone]:
    """What a registry must no longer serve once ``plan`` is applied (and it restarted)."""
    src = source(plan)
    named = {
        i.name: i.digest
        for i in src.images()
        if i.tag is not None and i.digest and i.verdict is Verdict.REMOVED
    }
    out: list[Gone] = []
    for t in src.targets():
        split = split_repo(t.path)
        last = t.path.rsplit("/", 2)
        if t.kind is TargetKind.REPOSITORY:
            for ref in t.refs:  # its tags, as the plan names them (at most 20)
                repo, colon, tag = ref.rpartition(":")
                if colon and repo and "/" not in tag and " " not in ref:
                    out.append(
                        Gone(
                            kind="manifest",
                            repo=repo,
                            ref=tag,
                            label=ref,
                            removed=named.get(ref) or "",
                        )
                    )
        elif t.kind is TargetKind.TAG and split is not None:
            label = f"{split[0]}:{last[-1]}"
            removed = named.get(label) or ""
            out.append(
                Gone(kind="manifest", repo=split[0], ref=last[-1], label=label, removed=removed)
            )
        elif t.kind is TargetKind.REVISION and split is not None:
            digest = f"{last[-2]}:{last[-1]}"
            out.append(
                Gone(kind="manifest", repo=split[0], ref=digest, label=f"{split[0]}@{digest}")
            )
        elif t.kind is TargetKind.LAYER_LINK and split is not None:
            digest = f"{last[-2]}:{last[-1]}"
            out.append(
                Gone(kind="blob", repo=split[0], ref=digest, label=f"{split[0]} blob {digest}")
            )
        elif t.kind is TargetKind.BLOB and t.refs:
            alg = t.path.split("/")[1]
            digest = f"{alg}:{last[-1]}"
            repo = t.refs[0].split("@")[0].rsplit(":", 1)[0]
            out.append(Gone(kind="blob", repo=repo, ref=digest, label=f"blob {digest}"))
    # once each: a repository removed folder by folder names its tags thrice, and a
    # blob goes as a layer link and as a blob of the same repository
    once: dict[tuple[str, str, str], Gone] = {}
    for g in out:
        once.setdefault((g.kind, g.repo, g.ref), g)
    return list(once.values())


class _Checker:
    def __init__(self, client: RegistryClient, progress: Progress | None) -> None:
        self.client = client
        self.progress = progress
        self.lock = threading.Lock()
        self.manifests: dict[tuple[str, str], list[str]] = {}
        self.blobs: dict[tuple[str, str], int] = {}
        self.done = 0

    def image(self, repo: str, tag: str) -> list[str]:
        problems = self._manifest(repo, tag)
        with self.lock:
            self.done += 1
            if self.progress is not None:
                self.progress(self.done, 0)
        return problems

    def _once(
        self, table: dict[tuple[str, str], T], key: tuple[str, str], ask: Callable[[], T]
    ) -> T:
        """``table[key]``, asking the registry only the first time (shared by threads)."""
        with self.lock:
            if key in table:
                return table[key]
        answer = ask()
        with self.lock:
            table[key] = answer
        return answer

    def _manifest(self, repo: str, ref: str) -> list[str]:
        return self._once(self.manifests, (repo, ref), lambda: self._fetch(repo, ref))

    def _fetch(self, repo: str, ref: str) -> list[str]:
        status, body = self.client.manifest(repo, ref)
        if status != 200:
            return [f"manifest {ref} answered {status}"]
        if ref.startswith("sha256:") and f"sha256:{hashlib.sha256(body).hexdigest()}" != ref:
            return [f"manifest {ref}: the body does not match its digest"]
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):  # a hostile registry may nest without end
            return [f"manifest {ref} is not JSON (or nested too deeply)"]
        if not isinstance(doc, dict):
            return [f"manifest {ref} is not a JSON object"]
        problems: list[str] = []
        for child in _descriptors(doc.get("manifests")):
            problems += self._manifest(repo, child["digest"])
        blobs = [*_descriptors([doc.get("config")]), *_descriptors(doc.get("layers"))]
        layers = doc.get("fsLayers")  # Docker schema1
        blobs += [
            {"digest": b["blobSum"]}
            for b in (layers if isinstance(layers, list) else [])
            if isinstance(b, dict) and isinstance(b.get("blobSum"), str)
        ]
        for blob in blobs:
            if blob.get("urls"):
                continue  # a foreign layer: served elsewhere, not by this registry
            status = self._blob(repo, blob["digest"])
            if status not in PRESENT:
                problems.append(f"blob {blob['digest']} answered {status}")
        return problems

    def _blob(self, repo: str, digest: str) -> int:
        return self._once(self.blobs, (repo, digest), lambda: self.client.blob_status(repo, digest))

    def gone(self, item: Gone) -> bool:
        """True when the registry no longer serves ``item``."""
        if item.kind == "manifest":
            return self.client.manifest(item.repo, item.ref)[0] != 200
        return self.client.blob_status(item.repo, item.ref) not in PRESENT


def _descriptors(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    return [d for d in value if isinstance(d, dict) and isinstance(d.get("digest"), str)]


def check(
    client: RegistryClient,
    images: Sequence[tuple[str, str]],
    *,
    removed: Iterable[Gone] = (),
    storage: Inventory | None = None,
    progress: Progress | None = None,
) -> Report:
    """Check every ``(repo, tag)`` through the registry, and that ``removed`` is gone
    (what is served tells a stale cache from a push since by ``storage``, read now)."""
    checker = _Checker(client, progress)
    gone = list(removed)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(pool.map(lambda rt: checker.image(*rt), images))
        served = list(pool.map(lambda g: not checker.gone(g), gone))
    failures = tuple(
        Failure(image=f"{repo}:{tag}", what="; ".join(problems))
        for (repo, tag), problems in zip(images, results, strict=True)
        if problems
    )
    still: list[Failure] = []
    again: list[Failure] = []
    for g in (g for g, is_served in zip(gone, served, strict=True) if is_served):
        back = None if storage is None else pushed_again(g, storage)
        if back is None:
            still.append(Failure(image=g.label, what=f"still served ({g.kind} {g.ref})"))
        else:
            again.append(Failure(image=g.label, what=back))
    return Report(
        images=len(images),
        manifests=len(checker.manifests),
        blobs=len(checker.blobs),
        failures=failures,
        removed_checked=len(gone),
        still_served=tuple(still),
        pushed_again=tuple(again),
    )


def pushed_again(item: Gone, storage: Inventory) -> str | None:
    """What of ``item`` is in the storage again (None: nothing, it is gone from there)."""
    repo = storage.repositories.get(item.repo)
    if item.kind == "manifest" and not item.ref.startswith("sha256:"):
        tag = repo.tags.get(item.ref) if repo is not None else None
        if tag is None:
            return None
        now = tag.current or "a manifest regplan cannot read"
        if item.removed and item.removed != now:
            return f"pushed again since: the tag now names {now}, the plan removed {item.removed}"
        return f"pushed again since: the tag names {now} again"
    if item.kind == "manifest":
        back = repo is not None and Digest(item.ref) in repo.revisions
        return "pushed again since: its revision link is in the storage again" if back else None
    if item.label.startswith("blob "):  # the blob itself
        back = Digest(item.ref) in storage.blobs
        return "pushed again since: the blob is in the storage again" if back else None
    back = repo is not None and Digest(item.ref) in repo.layers
    return "pushed again since: its layer link is in the storage again" if back else None
