"""The write guard's decision (registry/guard.py), table by table: what a probe's
answer proves, whether a read-only URL serves this storage, what is asked of it; and
online.write_guard's order (each URL probed, the storage read only for a proof)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from regplan.errors import RegistryOnlineError, RegistryUnknownError
from regplan.registry import online
from regplan.registry.guard import (
    SAMPLES,
    Answers,
    Ask,
    Catalog,
    Holding,
    Mode,
    NoAnswerError,
    OtherStorageError,
    Probe,
    Served,
    Target,
    after_probe,
    after_proof,
    compare,
    no_url,
)
from regplan.storage import location
from regplan.storage.config import Running
from regplan.storage.fs.fsstorage import FsStorage

URL = "http://reg.example:5000"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("mode", "stopped", "allow", "from_config", "outcome"),
    [
        (Mode.READ_ONLY, False, False, False, None),
        (Mode.READ_ONLY, True, False, False, None),  # still to be proven
        (Mode.UNREACHABLE, False, False, False, "nothing answered at"),
        (Mode.UNREACHABLE, False, False, True, "the registry's own view"),
        (Mode.UNREACHABLE, True, False, False, "stopped, as the operator said"),
        (Mode.UNREACHABLE, True, False, True, "stopped, as the operator said"),
        (Mode.WRITABLE, False, False, False, "accepts writes"),
        (Mode.WRITABLE, True, False, False, "accepts writes"),  # the word is contradicted
        (Mode.PULL_THROUGH, True, False, False, "pull-through cache"),
        (Mode.UNKNOWN, True, False, False, "may accept writes"),
        (Mode.WRITABLE, False, True, False, "not checked: --allow-online"),
        (Mode.UNREACHABLE, False, True, False, "not checked: --allow-online"),
    ],
)
def test_what_a_probe_proves(
    mode: Mode, stopped: bool, allow: bool, from_config: bool, outcome: str | None
) -> None:
    """A read-only answer goes on to its proof; no answer is the operator's word or a
    refusal; any other answer is a refusal (exit 6), unless --allow-online."""
    probe = Probe(mode=mode, detail="what it said")
    target = Target(url=URL, from_config=from_config)
    try:
        said = after_probe(target, probe, stopped=stopped, allow_online=allow, command="apply")
    except RegistryOnlineError as e:
        assert outcome is not None, e
        assert outcome in str(e), e
        assert e.exit_code == 6 and URL in str(e) and "\n" not in str(e)
        assert isinstance(e, NoAnswerError) == (mode is Mode.UNREACHABLE)
        return
    if said is None:
        assert outcome is None
        return
    assert outcome is not None
    assert outcome in said and said.startswith(f"probed {URL}: ")


def test_no_answer_says_why_it_proves_nothing() -> None:
    """The refusal names the URL and what to do (a reachable URL, or the operator's word)."""
    probe = Probe(mode=Mode.UNREACHABLE, detail=f"{URL}: [Errno 111] Connection refused")
    with pytest.raises(NoAnswerError) as given:
        after_probe(Target(url=URL), probe, stopped=False, allow_online=False, command="apply")
    assert "proves nothing" in str(given.value) and "--registry-stopped" in str(given.value)
    assert "http.addr" not in str(given.value)
    with pytest.raises(NoAnswerError, match=r"http\.addr"):
        after_probe(
            Target(url=URL, from_config=True),
            probe,
            stopped=False,
            allow_online=False,
            command="apply",
        )


def test_with_no_url_only_the_operator_decides() -> None:
    assert "--registry-stopped" in no_url(stopped=True, allow_online=False, command="apply")
    assert "--allow-online" in no_url(stopped=False, allow_online=True, command="apply")
    with pytest.raises(RegistryUnknownError, match="--registry-url URL"):
        no_url(stopped=False, allow_online=False, command="apply")


A1 = Ask(repo="team/app", ref="v1", digest=D1)
A2 = Ask(repo="old/repo", ref=D2, digest=D2)
HELD = Holding(storage="/srv/registry", asks=(A1, A2), repositories=frozenset({"a", "b"}))
EMPTY = Holding(storage="/srv/registry", asks=())


@pytest.mark.parametrize(
    ("holding", "answers", "other", "says"),
    [
        (
            HELD,
            (Served(ask=A1, status=200, digest=D1), Served(ask=A2, status=200, digest=D2)),
            None,
            f"team/app:v1 is sha256:{'1' * 12}, old/repo@{D2} is sha256:{'2' * 12}",
        ),
        (
            HELD,
            (Served(ask=A1, status=200, digest=D2), Served(ask=A2, status=200, digest=D2)),
            True,
            f"team/app:v1 is sha256:{'1' * 12} here but sha256:{'2' * 12} there",
        ),
        (
            HELD,
            (Served(ask=A1, status=200, digest=D1), Served(ask=A2, status=404)),
            True,
            "but unknown there (404)",
        ),
        (HELD, (Served(ask=A1, status=401),), False, "refused to show team/app:v1 (401)"),
        (HELD, (Served(ask=A1, status=0, error="reset"),), False, "no answer for team/app:v1"),
        (HELD, (Served(ask=A1, status=200),), False, "no Docker-Content-Digest"),
        (HELD, (Served(ask=A1, status=500),), False, "answered 500 for team/app:v1"),
        (HELD, (), False, "nothing was asked"),
        (EMPTY, Catalog(status=200), None, "its catalog lists nothing this storage lacks"),
        (HELD, Catalog(status=200, names=("a",)), None, "lists nothing this storage lacks"),
        (EMPTY, Catalog(status=200, names=("x", "y")), True, "lists x, y, which this storage"),
        (HELD, Catalog(status=200, names=tuple("abcdef")), True, "c, d, e, ..., which"),
        (EMPTY, Catalog(status=403), False, "refused to list its catalog (403)"),
        (EMPTY, Catalog(status=0, error="not JSON"), False, "no catalog (not JSON)"),
    ],
)
def test_whether_a_url_serves_this_storage(
    holding: Holding, answers: Answers, other: bool | None, says: str
) -> None:
    """Every manifest asked for must be what the storage says (404 or another digest:
    other storage; a refusal or an odd answer: not shown); without manifests, the
    catalog must list nothing the storage lacks."""
    found, evidence = compare(holding, answers)
    assert found is other
    assert says in evidence


def test_a_proof_is_recorded_and_a_mismatch_refused() -> None:
    probe = Probe(mode=Mode.READ_ONLY, detail="writes answer 405")
    good = (Served(ask=A1, status=200, digest=D1),)
    said = after_proof(Target(url=URL), probe, HELD, good, command="apply")
    assert said.startswith(f"probed {URL}: read-only (writes answer 405); it serves this storage")
    bad = (Served(ask=A1, status=404),)
    with pytest.raises(OtherStorageError) as refused:
        after_proof(Target(url=URL), probe, HELD, bad, command="regplan apply p.json")
    message = str(refused.value)
    assert refused.value.exit_code == 6 and "\n" not in message
    assert f"the read-only registry at {URL} serves other storage than /srv/registry" in message
    assert "team/app:v1 is sha256:111111111111 here but unknown there (404)" in message
    assert "regplan apply p.json moved nothing" in message
    with pytest.raises(OtherStorageError, match="is not shown to serve /srv/registry"):
        after_proof(Target(url=URL), probe, HELD, (Served(ask=A1, status=401),), command="x")
    with pytest.raises(OtherStorageError, match=r"http\.addr"):
        after_proof(Target(url=URL, from_config=True), probe, HELD, bad, command="x")


def test_what_is_asked_the_newest_tags_of_distinct_repositories(demo_root: Path) -> None:
    """The most recently pushed tags (one per repository, SAMPLES at most), each the
    manifest its current link names and a revision of its repository."""
    inventory = location.read(FsStorage.locate(demo_root))
    held = Holding.of(inventory, storage=str(demo_root))
    assert 0 < len(held.asks) <= SAMPLES
    assert len({a.repo for a in held.asks}) == len(held.asks)
    newest = max(t.pushed_at for r in inventory.repositories.values() for t in r.tags.values())
    for ask in held.asks:
        repo = inventory.repositories[ask.repo]
        tag = repo.tags[ask.ref]
        assert ask.digest == tag.current and tag.current in repo.revisions
    assert inventory.repositories[held.asks[0].repo].tags[held.asks[0].ref].pushed_at == newest
    assert held.repositories == frozenset(inventory.repositories)


def test_an_empty_storage_is_compared_by_its_catalog(tmp_path: Path) -> None:
    (tmp_path / "docker/registry/v2/repositories").mkdir(parents=True)
    (tmp_path / "docker/registry/v2/blobs").mkdir()
    held = Holding.of(location.read(FsStorage.locate(tmp_path)), storage="here")
    assert held.asks == () and held.repositories == frozenset()


class Replica:
    """One URL's answers, as a RegistryClient gives them (and what it was asked)."""

    def __init__(self, mode: Mode, served: dict[str, str]) -> None:
        self.mode, self.served_map = mode, served
        self.asked: list[str] = []

    def probe(self) -> Probe:
        self.asked.append("probe")
        return Probe(mode=self.mode, detail="answer")

    def served(self, ask: Ask) -> Served:
        self.asked.append(ask.name)
        digest = self.served_map.get(ask.name)
        return Served(ask=ask, status=200 if digest else 404, digest=digest)

    def catalog(self) -> Catalog:
        self.asked.append("catalog")
        return Catalog(status=200)


def guarded(
    replicas: dict[str, Replica], *, stopped: bool = False, settings: Running | None = None
) -> tuple[str, int]:
    """online.write_guard over ``replicas`` (URL -> answers): (the record, reads of the
    storage)."""
    reads: list[int] = []

    def holding() -> Holding:
        reads.append(1)
        return Holding(storage="/srv", asks=(A1,))

    @contextlib.contextmanager
    def open_url(url: str) -> Iterator[Replica]:
        yield replicas[url]

    urls = [] if settings is not None else list(replicas)
    said = online.write_guard(
        urls=urls,
        settings=settings,
        stopped=stopped,
        allow_online=False,
        command="apply",
        open_url=open_url,
        holding=holding,
    )
    return said, len(reads)


def test_each_replica_is_probed_and_proven_the_storage_read_once() -> None:
    good = {"team/app:v1": D1}
    a, b = Replica(Mode.READ_ONLY, good), Replica(Mode.READ_ONLY, good)
    said, reads = guarded({"http://a": a, "http://b": b})
    assert reads == 1
    assert a.asked == b.asked == ["probe", "team/app:v1"]
    assert said.startswith("probed http://a: read-only") and "; probed http://b: read-only" in said
    other = Replica(Mode.READ_ONLY, {"team/app:v1": D2})
    with pytest.raises(OtherStorageError, match="at http://c serves other storage"):
        guarded({"http://a": Replica(Mode.READ_ONLY, good), "http://c": other})


def test_no_answer_is_not_read_and_the_config_url_is_probed() -> None:
    """Stopped by the operator's word: the storage is not read for a proof. The
    config's URL (when no --registry-url) is probed as a given one is."""
    down = Replica(Mode.UNREACHABLE, {})
    settings = Running(readonly=False, cache=None, url="http://a")
    said, reads = guarded({"http://a": down}, stopped=True, settings=settings)
    assert reads == 0 and said.startswith("probed http://a: stopped, as the operator said")
    with pytest.raises(NoAnswerError, match="registry's own view"):
        guarded({"http://a": Replica(Mode.UNREACHABLE, {})}, settings=settings)
    with pytest.raises(RegistryOnlineError, match="accepts writes"):
        guarded({"http://a": Replica(Mode.WRITABLE, {})}, stopped=True, settings=settings)
