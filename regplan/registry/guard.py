"""The write guard's decision, pure: what a probe of the registry's URL proves, and
whether that URL serves this storage.

Apply and rollback move nothing unless the registry that serves the storage cannot
write. A URL is probed (``regclient``); its answer is judged here:

- writable, a pull-through cache, or an answer that says neither: refused (exit 6);
- no answer at all (a refused connection, a name that does not resolve, a connection
  that timed out): it proves nothing about the registry that serves this storage (a
  mistyped port looks the same as a stopped registry), so it is refused unless the
  operator says the registry is stopped (``--registry-stopped``);
- read-only: trusted only once the URL is shown to serve *this* storage: what it
  answers for a few tags the storage holds (their manifest digests) must be what the
  storage says; on a storage without a manifest, its catalog must list nothing the
  storage lacks. Another answer is refused (exit 6), naming the mismatch.

``--allow-online`` turns the guard off (the probe's answer is still recorded). Nothing
here does I/O: ``online.write_guard`` strings the probes, the storage's reading and
these decisions together.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from regplan.errors import RegistryOnlineError, RegistryUnknownError
from regplan.scan.inventory import Inventory
from regplan.scan.layout import Digest, printable
from regplan.scan.manifests import ManifestKind

SAMPLES = 3
"""Tags asked for at the most (the newest pushes, from as many repositories)."""


class Mode(enum.Enum):
    UNREACHABLE = "no answer"
    """A refused connection, a name that does not resolve, a connection that timed out:
    nothing answered, which proves nothing (a stopped registry and a typo look alike)."""
    READ_ONLY = "read-only"
    WRITABLE = "writable"
    PULL_THROUGH = "pull-through cache"
    """``proxy.remoteurl``: it refuses pushes (a JSON 405 UNSUPPORTED, where read-only
    mode answers a plain-text 405) but writes to its storage on every uncached pull."""
    UNKNOWN = "unknown"
    """Something answered, but not as a registry does (a proxy's 502, TLS refused, a
    server that accepted the connection and never answered)."""


@attrs.frozen(kw_only=True)
class Probe:
    mode: Mode
    detail: str


@attrs.frozen(kw_only=True)
class Target:
    """A URL to probe: given (``--registry-url``) or read from the registry's config."""

    url: str
    from_config: bool = False


@attrs.frozen(kw_only=True)
class Ask:
    """Something the storage holds, to ask the URL for: a manifest by tag or digest."""

    repo: str
    ref: str
    """A tag, or the digest itself."""
    digest: str
    """The manifest the storage says ``ref`` is."""

    @property
    def name(self) -> str:
        sep = "@" if self.ref == self.digest else ":"
        return printable(f"{self.repo}{sep}{self.ref}")


@attrs.frozen(kw_only=True)
class Holding:
    """What the storage holds, as far as the proof asks: a few manifests, or (with none)
    its repositories' names, for the catalog."""

    storage: str
    """The storage, as messages name it."""
    asks: tuple[Ask, ...]
    repositories: frozenset[str] = frozenset()

    @classmethod
    def of(cls, inventory: Inventory, *, storage: str) -> Holding:
        """The most recently pushed tags (one per repository, SAMPLES at most) whose
        manifest the registry can serve; else a few untagged manifests; else nothing
        (the catalog is compared)."""
        tags = sorted(
            (-tag.pushed_at, name, tag.name, tag.current)
            for name, repo in inventory.repositories.items()
            for tag in repo.tags.values()
            if tag.current is not None
            and tag.current in repo.revisions
            and _servable(inventory, tag.current)
        )
        asks: list[Ask] = []
        for _, repo, tag, digest in tags:
            if len(asks) < SAMPLES and all(a.repo != repo for a in asks):
                asks.append(Ask(repo=repo, ref=tag, digest=digest))
        if not asks:
            revisions = sorted(
                (name, d)
                for name, repo in inventory.repositories.items()
                for d in repo.revisions
                if _servable(inventory, d)
            )
            asks = [Ask(repo=name, ref=d, digest=d) for name, d in revisions[:SAMPLES]]
        return cls(
            storage=storage, asks=tuple(asks), repositories=frozenset(inventory.repositories)
        )


def _servable(inventory: Inventory, digest: Digest) -> bool:
    m = inventory.manifests.get(digest)
    return m is not None and m.known and m.kind is not ManifestKind.SCHEMA1


@attrs.frozen(kw_only=True)
class Served:
    """What the URL answered for one Ask: its status and ``Docker-Content-Digest``
    (status 0: no answer, ``error`` says why)."""

    ask: Ask
    status: int
    digest: str | None = None
    error: str = ""


@attrs.frozen(kw_only=True)
class Catalog:
    """The first page of the URL's ``/v2/_catalog`` (status 0: no answer)."""

    status: int
    names: tuple[str, ...] = ()
    error: str = ""


Answers = tuple[Served, ...] | Catalog


class NoAnswerError(RegistryOnlineError):
    """Nothing answered at the URL: that proves nothing about the registry (exit 6)."""


class OtherStorageError(RegistryOnlineError):
    """A read-only URL that serves other storage, or cannot be shown to serve this
    one (exit 6)."""


CREDENTIALS = (
    "give --registry-user with REGPLAN_REGISTRY_PASSWORD, or `docker login`, for a user "
    "that may pull"
)
CONFIG_VIEW = (
    ", the address the registry's config says it listens on (http.addr): that is the "
    "registry's own view, and may not be reachable from here (a container's published "
    "port, another host, a registry on object storage planned from elsewhere)"
)


def no_url(*, stopped: bool, allow_online: bool, command: str) -> str:
    """With no URL to probe: the operator's word, or a refusal (exit 6)."""
    if stopped:
        return STOPPED
    if allow_online:
        return "not checked: --allow-online"
    raise RegistryUnknownError(
        f"{command} moves nothing until it knows the registry cannot write: pass "
        "--registry-url URL (it is probed), --config CONFIG.yml (the registry's own; its "
        "http.addr is probed) or, once the registry is stopped, --registry-stopped "
        "(REGPLAN_REGISTRY_STOPPED=1)"
    )


STOPPED = "the operator said the registry is stopped (--registry-stopped)"
"""What the journal records when the operator's word is all regplan has."""


def after_probe(
    target: Target, probe: Probe, *, stopped: bool, allow_online: bool, command: str
) -> str | None:
    """What to record when the probe settles it; None for a read-only answer, which is
    trusted once the URL is shown to serve this storage (``after_proof``). Raises
    (exit 6) when it cannot write is not shown."""
    url, said = target.url, f"probed {target.url}: {probe.mode.value} ({probe.detail})"
    if allow_online:
        return f"{said}; not checked: --allow-online"
    if probe.mode is Mode.READ_ONLY:
        return None
    if probe.mode is Mode.UNREACHABLE:
        if stopped:  # the operator's word, and nothing contradicts it
            return f"probed {url}: stopped, as the operator said (--registry-stopped); " + (
                f"{probe.mode.value} ({probe.detail})"
            )
        where = CONFIG_VIEW if target.from_config else ""
        raise NoAnswerError(
            f"nothing answered at {url} ({probe.detail}){where}: that proves nothing about "
            f"the registry that serves this storage (a mistyped address looks the same); "
            f"{command} moved nothing. Pass --registry-url as this host reaches the "
            "registry, or, once it is stopped, --registry-stopped"
        )
    state = {
        Mode.WRITABLE: "accepts writes",
        Mode.PULL_THROUGH: "is a pull-through cache, which writes on every uncached pull",
    }.get(probe.mode, "may accept writes")
    raise RegistryOnlineError(
        f"the registry at {url} {state} ({probe.detail}): a push in flight "
        f"has blobs nothing references yet; set storage.maintenance.readonly.enabled: true "
        f"(or stop it), restart it, then run {command} again (or pass --allow-online)"
    )


def after_proof(
    target: Target, probe: Probe, holding: Holding, answers: Answers, *, command: str
) -> str:
    """What to record of a read-only URL shown to serve this storage; raises
    OtherStorageError (exit 6), naming the mismatch, when it is not."""
    other, says = compare(holding, answers)
    if other is None:
        return f"probed {target.url}: {probe.mode.value} ({probe.detail}); {says}"
    where = CONFIG_VIEW if target.from_config else ""
    what = "serves other storage than" if other else "is not shown to serve"
    raise OtherStorageError(
        f"the read-only registry at {target.url}{where} {what} {holding.storage}: {says}; "
        f"{command} moved nothing. Pass the --registry-url of the registry that serves "
        "this storage (each replica's, repeated)"
    )


def compare(holding: Holding, answers: Answers) -> tuple[bool | None, str]:
    """(None: it serves this storage; True: it serves other storage; False: it could not
    be shown), and the evidence or the first mismatch."""
    if isinstance(answers, Catalog):
        return _catalog(holding, answers)
    if not answers:
        return False, "nothing was asked"
    for served in answers:
        problem = _one(served)
        if problem is not None:
            return problem
    shown = ", ".join(f"{s.ask.name} is {short(s.ask.digest)}" for s in answers)
    return None, f"it serves this storage ({shown}, there as here)"


def _one(served: Served) -> tuple[bool, str] | None:
    name, here = served.ask.name, short(served.ask.digest)
    if served.status == 200 and served.digest == served.ask.digest:
        return None
    if served.status == 200 and served.digest:
        return True, f"{name} is {here} here but {short(served.digest)} there"
    if served.status == 404:
        return True, f"{name} is {here} here but unknown there (404)"
    return False, _unshown(served, name)


def _unshown(served: Served, name: str) -> str:
    if served.status in (401, 403):
        return f"it refused to show {name} ({served.status}): {CREDENTIALS}"
    if served.status == 0:
        return f"no answer for {name} ({served.error})"
    if served.status == 200:
        return f"its answer for {name} has no Docker-Content-Digest"
    return f"it answered {served.status} for {name}"


def _catalog(holding: Holding, catalog: Catalog) -> tuple[bool | None, str]:
    if catalog.status in (401, 403):
        return False, f"it refused to list its catalog ({catalog.status}): {CREDENTIALS}"
    if catalog.status != 200:
        why = catalog.error or f"it answered {catalog.status}"
        return False, f"no catalog ({why})"
    extra = sorted(set(catalog.names) - holding.repositories)
    if extra:
        named = printable(", ".join(extra[:3])) + (", ..." if len(extra) > 3 else "")
        holds = f"{len(holding.repositories)} repositories" if holding.repositories else "none"
        return True, f"its catalog lists {named}, which this storage lacks (it holds {holds})"
    return None, "it serves this storage (its catalog lists nothing this storage lacks)"


def short(digest: str) -> str:
    """``sha256:`` and the first 12 hex characters, as ``show`` prints a digest."""
    algo, _, hexd = digest.partition(":")
    return printable(f"{algo}:{hexd[:12]}" if hexd else digest)


def join(records: Sequence[str]) -> str:
    """The records of every URL probed, as the journal keeps them."""
    return "; ".join(records)
