"""What a registry must no longer serve once a plan is applied (check --plan)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from regplan.changes.records import ApplyRecord, State
from regplan.demo.samples import Registry
from regplan.registry.check import Gone, check, plan_state, removed_by, verdict
from regplan.registry.regclient import RegistryClient
from regplan.storage import location
from regplan.storage.fs.fsstorage import FsStorage
from regplan.views import render
from tests.helpers import make_plan, remove_targets, selection


def test_a_whole_repository_and_its_blobs(demo_root: Path) -> None:
    plan = make_plan(demo_root, selection(("old/repo",)))
    gone = {(g.kind, g.repo, g.ref) for g in removed_by(plan)}
    assert {("manifest", "old/repo", "2019"), ("manifest", "old/repo", "2020")} <= gone
    blobs = [g for g in removed_by(plan) if g.kind == "blob"]
    assert len(blobs) == 3 and {g.repo for g in blobs} == {"old/repo"}


def test_a_tag_its_revision_history_and_layer_links(demo_root: Path) -> None:
    plan = make_plan(demo_root, selection(("team/signed:v1",)))
    gone = removed_by(plan)
    manifests = {g.ref for g in gone if g.kind == "manifest"}
    assert "v1" in manifests
    assert any(r.endswith(".sig") for r in manifests)  # the signature followed v1
    assert any(r.startswith("sha256:") for r in manifests)  # and the revisions
    layer_links = [g for g in gone if g.label.startswith("team/signed blob ")]
    assert layer_links and all(g.repo == "team/signed" for g in layer_links)


def test_a_repository_removed_folder_by_folder_is_asked_for_once(demo_root: Path) -> None:
    """team/app/cache stays inside team/app: team/app goes as _manifests, _layers, _uploads."""
    plan = make_plan(demo_root, selection(("team/app",)))
    tags = [g.ref for g in removed_by(plan) if g.kind == "manifest" and g.repo == "team/app"]
    assert sorted(tags) == ["latest", "v1", "v2"]


def test_each_removed_thing_is_asked_for_once(demo_root: Path) -> None:
    """A blob goes as a layer link and as a blob: one question, one line if served."""
    plan = make_plan(demo_root, selection(("old/repo:2019",)))
    keys = [(g.kind, g.repo, g.ref) for g in removed_by(plan)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("states", "applied", "said"),
    [
        ([], False, "was never applied to this storage"),
        (["applied"], True, "is applied"),
        (["applied", "rolled-back"], False, "was rolled back"),
        (["purged"], True, "is purged"),
        (["applying"], False, "is unfinished"),
    ],
)
def test_check_plan_names_the_plans_state(states: list[str], applied: bool, said: str) -> None:
    """Only an applied plan's targets must be gone: after a rollback nothing is "still
    served" and no cache is called stale."""
    records = [
        ApplyRecord(
            seq=n,
            apply_id=f"a{n}",
            plan_id="P",
            state=State(state),
            root="/r",
            started_at="t",
            updated_at="t",
            targets=1,
            bytes=1,
        )
        for n, state in enumerate(states)
    ]
    found = plan_state("P", records)  # the latest apply of the plan decides
    assert found.applied is applied and said in found.note
    assert plan_state("other", records).note.endswith("was never applied to this storage")


def test_a_blob_redirected_to_storage_is_present() -> None:
    """#21.7: the s3 driver redirects blob reads (307): the image is whole, and a removed
    blob still answered by a redirect is still served."""
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"digest": "sha256:" + "c" * 64, "size": 1},
            "layers": [{"digest": "sha256:" + "d" * 64, "size": 1}],
        }
    ).encode()

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(manifest)))
            self.end_headers()
            self.wfile.write(manifest)

        def do_HEAD(self) -> None:
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:1/bucket/blob?signed")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with RegistryClient(f"http://127.0.0.1:{server.server_address[1]}") as client:
            gone = Gone(kind="blob", repo="team/app", ref="sha256:" + "e" * 64, label="blob e")
            report = check(client, [("team/app", "v1")], removed=[gone])
    finally:
        server.shutdown()
        server.server_close()
    assert report.failures == () and report.blobs == 2
    assert [f.image for f in report.still_served] == ["blob e"]


class ServesEverything(BaseHTTPRequestHandler):
    """A registry that answers every manifest and blob (an empty image manifest)."""

    body = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}
    ).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_a_tag_pushed_again_since_is_not_a_stale_cache(demo_root: Path) -> None:
    """#33.11: the plan removed team/app:v1; since then v1 was pushed again (its link in
    the storage names another manifest). Served, it is said to be pushed again, not a
    stale cache; what is served but not back in the storage still is one."""
    plan = make_plan(demo_root, selection(("team/app:v1",)))
    remove_targets(demo_root, plan)
    storage = FsStorage.locate(demo_root)
    v2 = location.read(storage).repositories["team/app"].tags["v2"].current
    assert v2 is not None
    Registry.create(demo_root).tag("team/app", "v1", v2)  # the push since
    [removed] = [i.digest for i in plan.images if i.name == "team/app:v1"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), ServesEverything)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with RegistryClient(f"http://127.0.0.1:{server.server_address[1]}") as client:
            report = check(client, [], removed=removed_by(plan), storage=location.read(storage))
    finally:
        server.shutdown()
        server.server_close()
    [again] = report.pushed_again
    assert again.image == "team/app:v1"
    assert again.what == f"pushed again since: the tag now names {v2}, the plan removed {removed}"
    assert "team/app:v1" not in {f.image for f in report.still_served}
    assert report.still_served  # its revision and layer links: not back, still served
    text = render.check_report(report, "http://r")
    assert f"PUSHED AGAIN team/app:v1: {again.what}" in text.splitlines()
    said = verdict(report, [])
    assert said.startswith(f"{len(report.still_served)} removed thing(s) still served")
    assert "1 pushed again since the apply (not a stale cache)" in text
