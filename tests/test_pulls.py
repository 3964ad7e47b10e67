"""Pull records: notification envelopes and log lines read (pure), the store (SQLite on
tmp_path), ``pulls import`` and the receiver on a loopback port."""

from __future__ import annotations

import gzip
import http.client
import json
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.pulls import accesslog, events, serve
from regplan.pulls.facts import GAP, Pulls, Span
from regplan.pulls.pull import Pull, PullsError, parse_time
from regplan.pulls.store import Store

INDEX = "sha256:" + "b3" * 32
CHILD = "sha256:" + "70" * 32
LAYER = "sha256:" + "46" * 32
T0 = "2026-12-07T14:29:32.709993417Z"


def event(
    n: int, digest: str, *, tag: str | None = None, kind: str = "manifests", action: str = "pull"
) -> dict[str, object]:
    """An event as distribution 2.8 sends it (fields as captured from a real one)."""
    media = (
        "application/vnd.oci.image.index.v1+json"
        if kind == "manifests"
        else "application/octet-stream"
    )
    target: dict[str, object] = {
        "mediaType": media,
        "size": 645,
        "digest": digest,
        "length": 645,
        "repository": "team/tool",
        "url": f"http://127.0.0.1:5000/v2/team/tool/{kind}/{digest}",
    }
    if tag is not None:
        target["tag"] = tag
    return {
        "id": f"5e7dbc82-b980-471d-9982-{n:012d}",
        "timestamp": T0,
        "action": action,
        "target": target,
        "request": {"id": f"7cc1ee45-9a82-47a2-8b03-{n:012d}", "method": "GET"},
        "actor": {},
        "source": {"addr": "vm:5000"},
    }


def envelope(*items: dict[str, object]) -> bytes:
    return json.dumps({"events": list(items)}).encode()


# -- envelopes -------------------------------------------------------------------------


def test_an_envelope_gives_its_manifest_pulls_only() -> None:
    """An index pulled by tag and a child by digest are pulls; a blob's pull and a push
    are not."""
    found = events.pulls(
        envelope(
            event(1, INDEX, tag="1.0"),
            event(2, CHILD),
            event(3, LAYER, kind="blobs"),
            event(4, INDEX, tag="1.0", action="push"),
        )
    )
    assert [(p.repo, p.digest, p.tag) for p in found] == [
        ("team/tool", INDEX, "1.0"),
        ("team/tool", CHILD, None),
    ]
    assert found[0].at == parse_time(T0)
    assert found[0].key == "req:7cc1ee45-9a82-47a2-8b03-000000000001"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"not json", "not JSON"),
        (b"[]", "no events list"),
        (b'{"events": [42]}', "event 0: not an object"),
        (
            envelope({**event(1, INDEX), "target": {"url": "/v2/a/manifests/x"}}),
            "repository missing",
        ),
        (
            envelope({**event(1, INDEX), "target": {"repository": "a", "digest": INDEX}}),
            "mediaType",
        ),
        (envelope({**event(1, INDEX), "timestamp": "yesterday"}), "not RFC 3339"),
        (envelope(event(1, "sha256:../../x")), "not a repository, digest or tag"),
    ],
)
def test_a_bad_envelope_is_refused_whole(body: bytes, said: str) -> None:
    """Anything malformed refuses the envelope with one line (nothing of it is kept)."""
    with pytest.raises(events.EnvelopeError, match=said) as e:
        events.pulls(body)
    assert "\n" not in str(e.value)


# -- log lines -------------------------------------------------------------------------

JSON_LINE = (
    '{"go.version":"go1.19.8","http.request.host":"127.0.0.1:39112","http.request.id":'
    '"7cc1ee45-9a82-47a2-8b03-3d942fdf3bd2","http.request.method":"GET","http.request.uri":'
    '"/v2/team/tool/manifests/1.0","http.response.status":200,"level":"info",'
    '"msg":"response completed","time":"2026-12-07T14:29:32.710206765Z"}\n'
)
TEXT_LINE = (
    'time="2026-12-07T14:29:33.1Z" level=info msg="response completed" go.version=go1.19.8 '
    "http.request.id=65fce445-b996 http.request.method=HEAD "
    f'http.request.uri="/v2/team/tool/manifests/{CHILD}" http.response.status=200\n'
)
COMBINED = (
    '127.0.0.1 - - [07/Dec/2026:14:29:32 +0000] "GET /v2/team/tool/manifests/1.0 HTTP/1.1" '
    '200 645 "" "skopeo/1.9.3"\n'
)
NOW = parse_time("2026-12-08T00:00:00Z") or 0.0


def read(*lines: str) -> tuple[accesslog.Reading, list[Pull]]:
    reading = accesslog.Reading(source="log", now=NOW)
    found = [p for line in lines if (p := reading.feed(line.encode())) is not None]
    return reading, found


def test_json_and_text_lines_give_pulls_combined_lines_are_skipped() -> None:
    """The formatter's lines (JSON, text) are read; the combined access line beside them
    is the same request again: skipped, counted."""
    reading, found = read(JSON_LINE, COMBINED, TEXT_LINE)
    assert [(p.repo, p.digest, p.tag, p.key) for p in found] == [
        ("team/tool", None, "1.0", "req:7cc1ee45-9a82-47a2-8b03-3d942fdf3bd2"),
        ("team/tool", CHILD, None, "req:65fce445-b996"),
    ]
    assert (reading.lines, reading.pulls, reading.skipped) == (3, 2, 1)
    assert reading.span == (
        parse_time("2026-12-07T14:29:32.710206765Z"),
        parse_time("2026-12-07T14:29:33.1Z"),
    )


@pytest.mark.parametrize(
    "change",
    [
        ('"http.response.status":200', '"http.response.status":404'),
        ('"GET"', '"DELETE"'),
        ("/manifests/1.0", "/blobs/sha256:" + "ab" * 32),
        ("/manifests/1.0", "/manifests/-not-a-tag"),
        ('"response completed"', '"request started"'),
    ],
)
def test_only_successful_gets_and_heads_of_manifests_are_pulls(change: tuple[str, str]) -> None:
    _, found = read(JSON_LINE.replace(*change))
    assert found == []


def test_times_going_back_or_ahead_are_reported_and_end_the_span() -> None:
    """A line whose time goes back (beyond the jitter) ends the span before it; a line in
    the future is skipped; both are reported with their line number."""
    later = JSON_LINE.replace("14:29:32.710206765Z", "15:00:00Z").replace("3d942fdf3bd2", "1")
    back = JSON_LINE.replace("14:29:32.710206765Z", "14:00:00Z").replace("3d942fdf3bd2", "2")
    ahead = JSON_LINE.replace("2026-12-07T14:29:32", "2027-01-01T00:00:00").replace(
        "3d942fdf3bd2", "3"
    )
    reading, found = read(JSON_LINE, later, back, ahead)
    assert len(found) == 3  # the line that goes back is still a pull; the future one is not
    assert reading.span == (
        parse_time("2026-12-07T14:29:32.710206765Z"),
        parse_time("2026-12-07T15:00:00Z"),
    )
    assert reading.reports == [
        "log:3: time goes back to 2026-12-07 14:00",
        "log:4: time 2027-01-01 00:00 is in the future: skipped",
    ]


def test_lines_without_a_request_id_are_told_apart_by_their_place() -> None:
    """Two identical lines without a request id are two pulls, and the same two in a
    second reading have the same keys."""
    line = JSON_LINE.replace('"http.request.id":"7cc1ee45-9a82-47a2-8b03-3d942fdf3bd2",', "")
    _, first = read(line, line)
    _, second = read(line, line)
    assert len({p.key for p in first}) == 2
    assert [p.key for p in first] == [p.key for p in second]


# -- the store -------------------------------------------------------------------------


def test_a_pull_recorded_twice_counts_once(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    pulls = [
        Pull(key="a", repo="r", at=10.5, digest=INDEX, tag="v1"),
        Pull(key="b", repo="r", at=20.0, digest=INDEX),
        Pull(key="c", repo="r", at=30.0, tag="v1"),
    ]
    with Store.open(db, create=True) as s:
        assert s.add(pulls, ("log:x", 1.0, 40.0)) == 3
        assert s.add(pulls[:2], ("log:x", 1.0, 40.0)) == 0
        first = s.read()
    with Store.open(db) as s:
        again = s.read()
    assert first == again
    assert first.digests == {("r", INDEX): first.digests[("r", INDEX)]}
    assert (first.digests[("r", INDEX)].last, first.digests[("r", INDEX)].count) == (20, 2)
    assert (first.tags[("r", "v1")].last, first.tags[("r", "v1")].count) == (30, 1)
    assert first.spans == (Span("log:x", 1, 40),)


def test_a_file_that_is_not_a_pull_store_is_refused(tmp_path: Path) -> None:
    """Random bytes, another SQLite database, a missing file: one line, and the other
    database is not changed."""
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00garbage" * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t(x)")
    before = other.read_bytes()
    for path, said in (
        (junk, "not a pull store"),
        (other, "not a pull store"),
        (tmp_path / "no", "no such"),
    ):
        with pytest.raises(PullsError, match=said):
            Store.open(path)
    assert other.read_bytes() == before


def test_coverage_joins_spans_a_gap_apart() -> None:
    """Spans at most GAP apart are one stretch; the stretch that reaches now says since
    when pulls are known."""
    spans = (Span("a", 0, 100), Span("b", 100 + GAP, 5000), Span("c", 5000 + GAP + 1, 9000))
    pulls = Pulls(file="f", sha256="0", spans=spans)
    assert pulls.known_since(9000) == 5000 + GAP + 1
    assert pulls.known_since(9000 + GAP + 1) is None
    joined = Pulls(file="f", sha256="0", spans=spans[:2])
    assert joined.known_since(5000) == 0


# -- pulls import ----------------------------------------------------------------------


def test_import_twice_plain_gzip_and_stdin_counts_once(tmp_path: Path) -> None:
    log = tmp_path / "registry.log"
    log.write_text(JSON_LINE + COMBINED + TEXT_LINE)
    packed = tmp_path / "registry.log.gz"
    packed.write_bytes(gzip.compress(log.read_bytes()))
    db = tmp_path / "p.db"
    runner = CliRunner()
    for args, given in (([str(log)], None), ([str(packed)], None), (["-"], log.read_bytes())):
        r = runner.invoke(cli, ["pulls", "import", "--db", str(db), *args], input=given)
        assert r.exit_code == 0, r.output
        assert "3 lines, 2 manifest pulls, 1 other lines skipped" in r.output
    with Store.open(db) as s:
        got = s.read()
    assert sum(x.count for x in got.digests.values()) + sum(x.count for x in got.tags.values()) == 2
    assert {s.source for s in got.spans} == {f"log:{log}", f"log:{packed}", "log:stdin"}


def test_import_of_something_not_a_log_or_a_store(tmp_path: Path) -> None:
    """A missing log, a broken gzip: one line, exit 1; a --db that is not a store too."""
    runner = CliRunner()
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b\x08broken")
    for args, said in (
        (["--db", str(tmp_path / "p.db"), str(tmp_path / "none.log")], "No such file"),
        (["--db", str(tmp_path / "p.db"), str(bad)], "cannot read"),
        (["--db", str(bad), "-"], "not a pull store"),
    ):
        r = runner.invoke(cli, ["pulls", "import", *args], input=b"")
        assert r.exit_code == 1, r.output
        assert said in r.output and r.output.count("\n") == 1


# -- the receiver ----------------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``pulls serve``'s server on a free loopback port, token ``s3cret``."""
    db = tmp_path / "p.db"
    store = Store.open(db, create=True)
    server = serve.server_for(store, "127.0.0.1", 0, "s3cret")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events", db
    server.shutdown()
    server.server_close()
    store.close()


def post(
    url: str,
    body: bytes,
    *,
    media: str = events.MEDIA_TYPE,
    token: str | None = "s3cret",  # noqa: S107 (a test token)
) -> int:
    headers = {"Content-Type": media}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def too_large(url: str) -> int:
    """The status of a POST announcing a body over the cap (refused before it is read)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    conn.putrequest("POST", "/" + rest)
    conn.putheader("Authorization", "Bearer s3cret")
    conn.putheader("Content-Type", events.MEDIA_TYPE)
    conn.putheader("Content-Length", str(serve.MAX_BODY + 1))
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def test_the_receiver_records_once_and_refuses_what_is_not_an_envelope(
    receiver: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """200 once recorded (the same envelope again counts nothing); a wrong token, media
    type, a body over the cap, not JSON: 4xx, one log line each, nothing recorded, and
    the receiver keeps serving."""
    url, db = receiver
    good = envelope(event(1, INDEX, tag="1.0"), event(2, CHILD))
    assert post(url, good) == 200
    assert post(url, good) == 200
    refused = [
        post(url, good, token=None),
        post(url, good, token="wrong"),  # noqa: S106 (a test's token)  # noqa: S106 (a test token)
        post(url, good, media="application/json"),
        too_large(url),
        post(url, b"not json"),
        post(url, envelope({**event(3, INDEX), "target": {}})),
    ]
    assert refused == [401, 401, 415, 413, 400, 400]
    with pytest.raises(urllib.error.HTTPError) as got_get:
        urllib.request.urlopen(url, timeout=10)
    assert got_get.value.code == 405
    assert post(url, envelope(event(4, CHILD))) == 200
    with Store.open(db) as s:
        got = s.read()
    assert {k: v.count for k, v in got.digests.items()} == {
        ("team/tool", INDEX): 1,
        ("team/tool", CHILD): 2,
    }
    warned = [r.getMessage() for r in caplog.records if r.name == "regplan.pulls.serve"]
    assert len(warned) == 7 and all("\n" not in w for w in warned)
