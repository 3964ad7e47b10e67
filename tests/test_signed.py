"""Signed images: signatures, attestations, SBOMs and referrers follow their image;
--protect keeps what is running (real trees, the planner as the CLI calls it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from regplan.cli import cli
from regplan.decide.flags import Retention
from regplan.decide.protect import Protect, parse_protect
from regplan.decide.selection import ImageSpec, Selection
from regplan.demo.samples import Image, Index, Registry, attached_tag, cosign, image, index
from regplan.errors import SelectionError
from regplan.plans.plan import Plan, TargetKind
from regplan.scan.inventory import ProblemCode
from regplan.scan.layout import Digest, encoded_of, revision_dir, short_of, tag_dir
from tests.helpers import make_plan

REPO = "test/app"


def tag_path(tag: str, repo: str = REPO) -> str:
    return tag_dir(repo, tag)


class Signed:
    """test/app: v1, v2, v3, each signed (.sig); v1 and v3 attested (.att); v2 with an
    SBOM referrer (OCI subject) and its referrers fallback tag. Signatures last."""

    def __init__(self, root: Path) -> None:
        reg = Registry.create(root)
        self.reg = reg
        self.v = {n: image([{f"app/{n}": f"version {n}".encode()}]) for n in ("v1", "v2", "v3")}
        for name, img in self.v.items():
            reg.push(REPO, img, name)
        self.attached: dict[str, list[str]] = {n: [] for n in self.v}
        for name, img in self.v.items():
            kinds = ("sig", "att") if name != "v2" else ("sig",)
            for kind in kinds:
                tag = attached_tag(img, kind)
                reg.push(REPO, cosign(img, REPO, kind=kind), tag)
                self.attached[name].append(tag)
        self.sbom = image([{"sbom.spdx.json": b"{}"}], subject=self.v["v2"].manifest)
        reg.push(REPO, self.sbom)  # by digest, as an OCI 1.1 client does
        fallback = index([self.sbom])
        self.fallback_tag = f"sha256-{encoded_of(self.v['v2'].digest)}"
        reg.push(REPO, fallback, self.fallback_tag)
        self.fallback = fallback
        self.attached["v2"].append(self.fallback_tag)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Signed]:
    root = tmp_path / "registry"
    return root, Signed(root)


def plan_for(root: Path, *images: str, **kw: object) -> Plan:
    retention = Retention(**kw)  # type: ignore[arg-type]
    sel = Selection(images=tuple(ImageSpec.parse(i) for i in images), retention=retention)
    return make_plan(root, sel)


def tags_removed(plan: Plan) -> set[str]:
    return {t.path.rsplit("/", 1)[1] for t in plan.targets if t.kind == TargetKind.TAG}


def removed_revisions(plan: Plan) -> set[Digest]:
    return {
        Digest("sha256:" + t.path.rsplit("/", 1)[1])
        for t in plan.targets
        if t.kind == TargetKind.REVISION
    }


def test_keep_last_ranks_image_tags_only(signed: tuple[Path, Signed]) -> None:
    """The signatures were pushed last; they are not 'the newest tags'. v1 goes, with
    its signature and attestation; v2, v3 and their attached tags stay."""
    root, s = signed
    plan = plan_for(root, REPO, keep_last=2)
    assert tags_removed(plan) == {"v1", *s.attached["v1"]}
    sig_of_v1 = cosign(s.v["v1"], REPO, kind="sig").digest
    assert {s.v["v1"].digest, sig_of_v1} <= removed_revisions(plan)


def test_attached_tags_follow_a_removed_tag(signed: tuple[Path, Signed]) -> None:
    root, s = signed
    plan = plan_for(root, f"{REPO}:v3")
    assert tags_removed(plan) == {"v3", *s.attached["v3"]}
    reasons = {t.path: t.reason for t in plan.targets}
    sig = attached_tag(s.v["v3"], "sig")
    assert reasons[tag_path(sig)].startswith(
        f"signature of {REPO}@{short_of(s.v['v3'].digest)}, which this plan removes (tag {REPO}:v3"
    )
    assert reasons[tag_path(attached_tag(s.v["v3"], "att"))].startswith("attestation of ")
    # the signature's payload and config go too: nothing else uses them
    att = cosign(s.v["v3"], REPO, kind="att")
    blobs = {t.path for t in plan.targets if t.kind == TargetKind.BLOB}
    assert all(any(encoded_of(b.digest) in p for p in blobs) for b in att.blobs)


def test_the_referrer_and_its_fallback_tag_follow_their_subject(
    signed: tuple[Path, Signed],
) -> None:
    root, s = signed
    plan = plan_for(root, f"{REPO}:v2")
    assert tags_removed(plan) == {"v2", *s.attached["v2"]}
    gone = removed_revisions(plan)
    assert {s.v["v2"].digest, s.sbom.digest, s.fallback.digest} <= gone
    reasons = {t.path: t.reason for t in plan.targets}
    assert reasons[tag_path(s.fallback_tag)].startswith("referrers of ")


def test_attached_tags_stay_while_their_subject_stays(tmp_path: Path) -> None:
    """v3 and latest point at one image: removing v3 keeps the image and its signature."""
    root = tmp_path / "registry"
    reg = Registry.create(root)
    img = image([{"a": b"1"}])
    reg.push(REPO, img, "v3")
    reg.tag(REPO, "latest", img.digest)
    reg.push(REPO, cosign(img, REPO), attached_tag(img, "sig"))
    plan = plan_for(root, f"{REPO}:v3")
    assert tags_removed(plan) == {"v3"}


def test_untagged_removes_an_untagged_subject_with_its_signature(tmp_path: Path) -> None:
    """A re-pushed tag leaves the old image untagged; its signature follows it out."""
    root = tmp_path / "registry"
    reg = Registry.create(root)
    old, new = image([{"a": b"old"}]), image([{"a": b"new"}])
    for img in (old, new):
        reg.push(REPO, img, "latest")
        reg.push(REPO, cosign(img, REPO), attached_tag(img, "sig"))
    plan = make_plan(root, Selection(untagged=(REPO,)))
    assert tags_removed(plan) == {attached_tag(old, "sig")}
    assert old.digest in removed_revisions(plan)
    assert new.digest not in removed_revisions(plan)


def test_orphans_go_with_untagged_and_foreign_subjects_stay(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = Registry.create(root)
    img, elsewhere, deleted = image([{"a": b"1"}]), image([{"b": b"2"}]), image([{"c": b"3"}])
    reg.push(REPO, img, "v1")
    reg.push("other/repo", elsewhere, "v1")
    reg.push(REPO, cosign(elsewhere, "other/repo"), attached_tag(elsewhere, "sig"))
    reg.push(REPO, cosign(deleted, REPO), attached_tag(deleted, "sig"))
    plan = make_plan(root, Selection(untagged=(REPO,)))
    orphan = attached_tag(deleted, "sig")
    assert tags_removed(plan) == {orphan}
    reasons = {t.path: t.reason for t in plan.targets}
    assert reasons[tag_path(orphan)] == (
        f"orphaned signature: subject {deleted.digest} is in no repository (--untagged {REPO})"
    )
    kept = {k.path: k.reason for k in plan.kept}
    assert "which is in other/repo" in kept[tag_path(attached_tag(elsewhere, "sig"))]


def test_explicitly_removing_a_signature_only(signed: tuple[Path, Signed]) -> None:
    root, s = signed
    sig = attached_tag(s.v["v1"], "sig")
    plan = plan_for(root, f"{REPO}:{sig}")
    assert tags_removed(plan) == {sig}
    assert s.v["v1"].digest not in removed_revisions(plan)


def test_removing_every_image_tag_removes_the_repository(signed: tuple[Path, Signed]) -> None:
    root, _ = signed
    plan = plan_for(root, f"{REPO}:v*")
    assert [t.path for t in plan.targets if t.kind == TargetKind.REPOSITORY] == [
        f"repositories/{REPO}"
    ]


def test_retention_never_removes_every_image_because_of_signatures(
    signed: tuple[Path, Signed],
) -> None:
    """--keep-last 0 over a signed repository keeps the newest image (and its signatures)."""
    root, s = signed
    plan = plan_for(root, REPO, keep_last=0)
    assert tags_removed(plan) == {"v1", "v2", *s.attached["v1"], *s.attached["v2"]}


# -- --protect ------------------------------------------------------------------


def protect(*lines: str) -> tuple[Protect, ...]:
    return parse_protect("\n".join(lines), "running.txt")


def plan_protecting(root: Path, entries: tuple[Protect, ...], *images: str, **kw: object) -> Plan:
    retention = Retention(**kw)  # type: ignore[arg-type]
    sel = Selection(
        images=tuple(ImageSpec.parse(i) for i in images), retention=retention, protect=entries
    )
    return make_plan(root, sel)


@pytest.mark.parametrize(
    "line",
    [
        f"{REPO}:v1",
        f"registry.example:5000/{REPO}:v1",
        "DIGEST",
        f"{REPO}@DIGEST",
        f"localhost/{REPO}:v1@DIGEST",
    ],
)
def test_protect_keeps_an_image_with_its_signatures(signed: tuple[Path, Signed], line: str) -> None:
    root, s = signed
    digest = str(s.v["v1"].digest)
    entries = protect("# what the cluster runs", "", line.replace("DIGEST", digest))
    plan = plan_protecting(root, entries, REPO, keep_last=0, allow_empty_repos=True)
    assert tags_removed(plan) == {"v2", "v3", *s.attached["v2"], *s.attached["v3"]}
    kept = {k.path: k.reason for k in plan.kept}
    why = f"protected by running.txt:3 ({line.replace('DIGEST', digest)})"
    assert kept[revision_dir(REPO, s.v["v1"].digest)] == why
    assert kept[tag_path("v1")] == why
    [record] = plan.request.selection.protect
    assert record.matches == (f"{REPO}@{digest}",)


def test_protect_keeps_a_repository_from_going_whole(signed: tuple[Path, Signed]) -> None:
    root, s = signed
    plan = plan_protecting(root, protect(f"{REPO}:v2"), REPO)
    assert not [t for t in plan.targets if t.kind == TargetKind.REPOSITORY]
    assert tags_removed(plan) == {"v1", "v3", *s.attached["v1"], *s.attached["v3"]}
    assert "the repository stays" in {k.path: k.reason for k in plan.kept}[f"repositories/{REPO}"]


def test_protect_keeps_an_untagged_image(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = Registry.create(root)
    old, new = image([{"a": b"old"}]), image([{"a": b"new"}])
    reg.push(REPO, old, "latest")
    reg.push(REPO, new, "latest")
    sel = Selection(untagged=(REPO,), protect=protect(str(old.digest)))
    assert old.digest not in removed_revisions(make_plan(root, sel))


def test_protect_keeps_index_children(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = Registry.create(root)
    multi: Index = index([image([{"a": b"1"}], arch="amd64"), image([{"a": b"2"}], arch="arm64")])
    reg.push(REPO, multi, "v1")
    reg.push(REPO, image([{"b": b"1"}]), "v2")
    plan = plan_protecting(root, protect(f"{REPO}@{multi.digest}"), f"{REPO}:v1")
    assert tags_removed(plan) == set()
    child: Image = multi.children[0]
    assert child.digest not in removed_revisions(plan)


def test_a_protect_line_that_matches_nothing_is_a_warning(
    signed: tuple[Path, Signed], tmp_path: Path
) -> None:
    root, _ = signed
    running = tmp_path / "running.txt"
    running.write_text(f"{REPO}:v1\nnope/repo:v9\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", str(tmp_path / "k")]).exit_code == 0
    args = ["plan", "--root", str(root), "--key", str(tmp_path / "k"), "-o"]
    args += [str(tmp_path / "p.json"), "--image", f"{REPO}:v2", "--protect", str(running)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"Warning: --protect {running}:2: nope/repo:v9 matches nothing" in result.output
    shown = runner.invoke(cli, ["show", str(tmp_path / "p.json"), "--format", "json"]).output
    assert '"source": "' + str(running) + ':1"' in shown


@pytest.mark.parametrize("line", ["just-a-repo", "repo@sha256:xyz", "sha256:", "a b:c"])
def test_a_malformed_protect_line_names_its_place(line: str) -> None:
    with pytest.raises(SelectionError, match=r"--protect running.txt:1: .* is not repo:tag"):
        protect(line)


def test_an_unknown_repository_folder_is_reported_and_never_pruned(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    reg = Registry.create(root)
    reg.push(REPO, image([{"a": b"1"}]), "v1")
    referrers = reg.v2 / f"repositories/{REPO}/_referrers/empty/inside"
    referrers.mkdir(parents=True)
    plan = make_plan(root, Selection(prune=True, gc=True, untagged=(REPO,)))
    assert not [t for t in plan.targets if "_referrers" in t.path]
    assert [(p.code, p.path) for p in plan.problems] == [
        (ProblemCode.UNKNOWN_FOLDER, f"repositories/{REPO}/_referrers")
    ]


def test_a_protect_file_is_read_as_people_save_it() -> None:
    """#21.2: a UTF-8 byte order mark (Notepad, PowerShell 5) and CRLF line ends."""
    entries = parse_protect("\ufeffold/repo:2019\r\nteam/app:v1\r\n", "running.txt")
    assert [(e.repo, e.tag) for e in entries] == [("old/repo", "2019"), ("team/app", "v1")]


@pytest.mark.parametrize("line", ["team/app:v1\x1b[2J", "team/\x00app:v1", "team/app:v1\u202e"])
def test_a_protect_line_with_a_control_character_stops_the_plan(line: str) -> None:
    with pytest.raises(SelectionError, match=r"running\.txt:1: .* not printable"):
        protect(line)


def test_a_protected_signature_stays_when_its_image_goes(signed: tuple[Path, Signed]) -> None:
    """#21.4: a line naming an attached tag keeps it, though its subject is removed."""
    root, s = signed
    sig = next(t for t in s.attached["v1"] if t.endswith(".sig"))
    plan = plan_protecting(root, protect(f"{REPO}:{sig}"), f"{REPO}:v1")
    assert "v1" in tags_removed(plan) and sig not in tags_removed(plan)
    assert {k.path: k.reason for k in plan.kept}[tag_path(sig)] == (
        f"protected by running.txt:1 ({REPO}:{sig})"
    )


def test_an_accessory_pushed_by_tag_follows_its_subject(tmp_path: Path) -> None:
    """#21.6: an SBOM pushed by tag with a real OCI client (oras) as app/x:sbom-a, its
    subject app/x:a, after tags a, b, c: it is never ranked (keep-last 2 keeps b and c),
    it goes with a (not kept as an image, keeping nothing of a alive), and the review
    names it an accessory of a."""
    root = tmp_path / "registry"
    reg = Registry.create(root)
    imgs = {n: image([{n: n.encode()}]) for n in "abc"}
    for n in "abc":
        reg.push("app/x", imgs[n], n)
    sbom = image([{"sbom.spdx.json": b"{}"}], subject=imgs["a"].manifest)
    reg.push("app/x", sbom, "sbom-a")
    plan = make_plan(
        root, Selection(images=(ImageSpec.parse("app/x"),), retention=Retention(keep_last=2))
    )
    assert tags_removed(plan) == {"a", "sbom-a"}
    assert {imgs["a"].digest, sbom.digest} <= removed_revisions(plan)
    assert imgs["b"].digest not in removed_revisions(plan)
    by_name = {i.name: i for i in plan.images}
    assert by_name["app/x:b"].reason == "rank 2 of keep-last 2 by push time"
    accessory = by_name["app/x:sbom-a"]
    assert accessory.kind == "accessory" and accessory.attached_to == f"app/x@{imgs['a'].digest}"
    reason = next(t.reason for t in plan.targets if t.path.endswith("/tags/sbom-a"))
    assert reason.startswith("accessory of app/x@")
