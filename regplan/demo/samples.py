"""Byte-faithful sample registries, for ``regplan demo``, tests and benchmarks.

Images are real: gzip'd tar layers, a config whose ``rootfs.diff_ids`` are the
uncompressed tars' digests, OCI or Docker manifests and indexes. ``Registry``
writes them the way distribution's filesystem driver stores a push; ``write_oci_layout``
writes the same images as an OCI layout that ``skopeo copy`` can push to a
real registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs

from regplan.scan.layout import (
    V2,
    Digest,
    blob_data,
    encoded_of,
    layer_dir,
    revision_dir,
    tag_dir,
    tag_index_dir,
    upload_dir,
)
from regplan.scan.manifests import OCI_INDEX_MT, OCI_MANIFEST_MT

CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = "2026-01-01T00:00:00Z"


def digest_of(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def _json(obj: object) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=False).encode()


@attrs.frozen
class Blob:
    data: bytes
    media_type: str

    @property
    def digest(self) -> Digest:
        return digest_of(self.data)

    def descriptor(self, **extra: object) -> dict[str, object]:
        return {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": len(self.data),
            **extra,
        }


@attrs.frozen
class Image:
    """A single-platform image: its manifest, config and layers."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    platform: tuple[str, str] = ("linux", "amd64")

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)

    @property
    def digest(self) -> Digest:
        return self.manifest.digest


@attrs.frozen
class Index:
    """A multi-platform image index over child images of the same repository."""

    manifest: Blob
    children: tuple[Image, ...]

    @property
    def digest(self) -> Digest:
        return self.manifest.digest


Pushable = Image | Index


def layer(files: Mapping[str, bytes]) -> tuple[Blob, Digest]:
    """A gzip'd tar layer (deterministic) and its diff_id."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = raw.getvalue()
    return Blob(gzip.compress(tar_bytes, mtime=0), LAYER_MT), digest_of(tar_bytes)


def image(
    layers_files: Iterable[Mapping[str, bytes]],
    *,
    arch: str = "amd64",
    created: str | None = EPOCH,
    subject: Blob | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Image:
    layers: list[Blob] = []
    diff_ids: list[str] = []
    for files in layers_files:
        blob, diff_id = layer(files)
        layers.append(blob)
        diff_ids.append(str(diff_id))
    fields: dict[str, object] = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if created is not None:  # None: a config without it (a Helm chart's, an artifact's)
        fields = {"created": created, **fields}
    config = Blob(_json(fields), CONFIG_MT)
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MT,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if annotations:
        doc["annotations"] = dict(annotations)
    return Image(
        manifest=Blob(_json(doc), OCI_MANIFEST_MT),
        config=config,
        layers=tuple(layers),
        platform=("linux", arch),
    )


COSIGN_SIGNATURE_MT = "application/vnd.dev.cosign.simplesigning.v1+json"
IN_TOTO_MT = "application/vnd.dsse.envelope.v1+json"


def cosign(subject: Pushable, repo: str, *, kind: str = "sig") -> Image:
    """What ``cosign sign`` (``kind="sig"``) or ``cosign attest`` (``"att"``) pushes as
    the tag ``sha256-<hex>.<kind>``: an OCI manifest whose one layer is the signed
    payload naming the subject, with the signature in an annotation; its config
    is cosign's near-empty image config."""
    payload = _json(
        {
            "critical": {
                "identity": {"docker-reference": repo},
                "image": {"docker-manifest-digest": str(subject.digest)},
                "type": "cosign container image signature",
            },
            "optional": None,
        }
    )
    layer_mt = COSIGN_SIGNATURE_MT if kind == "sig" else IN_TOTO_MT
    body = Blob(payload if kind == "sig" else _json({"payload": payload.hex()}), layer_mt)
    config = Blob(
        _json(
            {
                "architecture": "",
                "created": "0001-01-01T00:00:00Z",
                "history": [{"created": "0001-01-01T00:00:00Z"}],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [str(body.digest)]},
                "config": {},
            }
        ),
        CONFIG_MT,
    )
    annotations = {
        "dev.cosignproject.cosign/signature": f"MEUCIQ{encoded_of(subject.digest)[:20]}="
    }
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MT,
        "config": config.descriptor(),
        "layers": [body.descriptor(annotations=annotations)],
    }
    return Image(manifest=Blob(_json(doc), OCI_MANIFEST_MT), config=config, layers=(body,))


def attached_tag(subject: Pushable, kind: str) -> str:
    """cosign's tag for a signature (``sig``), attestation (``att``) or SBOM (``sbom``)."""
    return f"sha256-{encoded_of(subject.digest)}.{kind}"


def index(children: Iterable[Image]) -> Index:
    kids = tuple(children)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MT,
        "manifests": [
            c.manifest.descriptor(platform={"os": c.platform[0], "architecture": c.platform[1]})
            for c in kids
        ],
    }
    return Index(manifest=Blob(_json(doc), OCI_INDEX_MT), children=kids)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@attrs.define
class Registry:
    """Writes pushes into ``docker/registry/v2`` the way distribution stores them."""

    v2: Path
    clock: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z; each push advances it a minute

    @classmethod
    def create(cls, root: Path) -> Registry:
        v2 = root.joinpath(*V2)
        (v2 / "blobs").mkdir(parents=True, exist_ok=True)
        (v2 / "repositories").mkdir(parents=True, exist_ok=True)
        return cls(v2=v2)

    def _link(self, rel: str, digest: Digest) -> None:
        _write(self.v2 / rel / "link", str(digest).encode())

    def blob(self, blob: Blob) -> None:
        path = self.v2 / blob_data(blob.digest)
        if not path.exists():
            _write(path, blob.data)

    def _manifest(self, repo: str, manifest: Blob) -> None:
        self.blob(manifest)
        self._link(revision_dir(repo, manifest.digest), manifest.digest)

    def push(self, repo: str, item: Pushable, tag: str | None = None) -> Digest:
        """Upload blobs (linked in ``_layers``), children, the manifest, then move the tag."""
        # distribution leaves the (empty) upload folder of every blob upload behind
        (self.v2 / upload_dir(repo, "x")).parent.mkdir(parents=True, exist_ok=True)
        images = item.children if isinstance(item, Index) else (item,)
        for img in images:
            for b in img.blobs:
                self.blob(b)
                self._link(layer_dir(repo, b.digest), b.digest)
            if isinstance(item, Index):
                self._manifest(repo, img.manifest)
        self._manifest(repo, item.manifest)
        if tag is not None:
            self.tag(repo, tag, item.digest)
        return item.digest

    def tag(self, repo: str, tag: str, digest: Digest) -> None:
        self._link(tag_index_dir(repo, tag, digest), digest)
        self._link(tag_dir(repo, tag) + "/current", digest)
        self.clock += 60
        current = self.v2 / tag_dir(repo, tag) / "current" / "link"
        os.utime(current, (self.clock, self.clock))

    def upload(self, repo: str, uuid: str, started_at: str, data: bytes = b"") -> None:
        base = self.v2 / upload_dir(repo, uuid)
        _write(base / "data", data)
        _write(base / "startedat", started_at.encode())


def write_oci_layout(path: Path, refs: Mapping[str, Pushable]) -> None:
    """An OCI image layout holding ``refs`` (name -> image or index) for ``skopeo copy``."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(blob: Blob) -> None:
        (blobs / encoded_of(blob.digest)).write_bytes(blob.data)

    manifests = []
    for name, item in sorted(refs.items()):
        images = item.children if isinstance(item, Index) else (item,)
        for img in images:
            for b in (*img.blobs, img.manifest):
                put(b)
        put(item.manifest)
        manifests.append(
            item.manifest.descriptor(annotations={"org.opencontainers.image.ref.name": name})
        )
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_bytes(
        _json({"schemaVersion": 2, "mediaType": OCI_INDEX_MT, "manifests": manifests})
    )


# -- the sample registry --------------------------------------------------------


def _files(tag: str, n: int = 1) -> dict[str, bytes]:
    return {f"app/{tag}-{i}.txt": f"{tag} file {i}\n".encode() * 64 for i in range(n)}


BASE = {"etc/os-release": b"NAME=demo-base\nVERSION=1\n" * 32, "bin/sh": b"\x7fELF demo\n" * 512}


@attrs.frozen
class DemoImages:
    """What ``build_demo`` pushed, so tests can name and pull each image."""

    pushes: tuple[tuple[str, str | None, Pushable], ...]

    def tagged(self) -> dict[str, Pushable]:
        """``repo:tag`` -> what the tag points to now (the last push wins)."""
        out: dict[str, Pushable] = {}
        for repo, tag, item in self.pushes:
            if tag is not None:
                out[f"{repo}:{tag}"] = item
        return out


def demo_pushes() -> DemoImages:
    """The sample registry's history of pushes, in order."""
    pushes: list[tuple[str, str | None, Pushable]] = []
    app_v1 = image([BASE, _files("app-v1")])
    app_v2 = image([BASE, _files("app-v2")])
    pushes += [("team/app", "v1", app_v1), ("team/app", "v2", app_v2)]
    # latest re-pushed three times: two untagged revisions stay behind
    for build in range(3):
        pushes.append(("team/app", "latest", image([BASE, _files(f"app-build{build}")])))
    # a multi-arch index, tagged; children are untagged revisions of the same repo
    pushes.append(
        (
            "team/tool",
            "1.0",
            index(
                [
                    image([BASE, _files("tool-amd64")], arch="amd64"),
                    image([BASE, _files("tool-arm64")], arch="arm64"),
                ]
            ),
        )
    )
    # nested repositories: team/app/cache lives inside team/app's folder
    pushes.append(("team/app/cache", "stable", image([_files("cache")])))
    # cross-repository sharing: old/repo uses team/app:v1's layers exactly
    pushes.append(("old/repo", "2019", app_v1))
    pushes.append(("old/repo", "2020", image([BASE, _files("old-2020")])))
    # signed images: cosign pushes signatures and attestations as tags after the image
    signed_v1 = image([BASE, _files("signed-v1")])
    signed_v2 = image([BASE, _files("signed-v2")])
    pushes += [("team/signed", "v1", signed_v1), ("team/signed", "v2", signed_v2)]
    for subject, kinds in ((signed_v1, ("sig", "att")), (signed_v2, ("sig",))):
        for kind in kinds:
            sig = cosign(subject, "team/signed", kind=kind)
            pushes.append(("team/signed", attached_tag(subject, kind), sig))
    return DemoImages(tuple(pushes))


def build_demo(root: Path) -> DemoImages:
    """Write the sample registry under ``root`` (its rootdirectory) and return its pushes."""
    reg = Registry.create(root)
    pushed = demo_pushes()
    for repo, tag, item in pushed.pushes:
        reg.push(repo, item, tag)
    return pushed


def build_scale(
    root: Path,
    *,
    repos: int,
    tags: int,
    pushes: int = 2,
    index_every: int = 10,
    repush_every: int = 1,
) -> int:
    """A large registry: ``repos`` repositories with ``tags`` tags each; every
    ``repush_every``-th tag is pushed ``pushes`` times (leaving ``pushes - 1`` untagged
    revisions behind), the others once; every ``index_every``-th tag is a two-platform
    index. All images share one base layer and each has its own small layer.
    Returns the number of images written."""
    reg = Registry.create(root)
    base = layer(BASE)
    written = 0
    for r in range(repos):
        repo = f"team{r % 7}/svc{r}"
        for t in range(tags):
            for p in range(pushes if t % repush_every == 0 else 1):
                own = {f"app/{r}-{t}-{p}": f"{repo}:{t}#{p}".encode()}
                if index_every and t % index_every == 0:
                    item: Pushable = index(
                        [
                            _with_base(base, image([own], arch="amd64")),
                            _with_base(base, image([{**own, "arm": b"1"}], arch="arm64")),
                        ]
                    )
                else:
                    item = _with_base(base, image([own]))
                reg.push(repo, item, f"v{t}")
                written += 1
    return written


def _with_base(base: tuple[Blob, Digest], img: Image) -> Image:
    """``img`` with the shared base layer (and its diff_id) in front, as real images have."""
    blob, diff_id = base
    doc = json.loads(img.manifest.data)
    doc["layers"].insert(0, blob.descriptor())
    config = json.loads(img.config.data)
    config["rootfs"]["diff_ids"].insert(0, str(diff_id))
    cfg = Blob(_json(config), CONFIG_MT)
    doc["config"] = cfg.descriptor()
    return Image(
        manifest=Blob(_json(doc), img.manifest.media_type),
        config=cfg,
        layers=(blob, *img.layers),
        platform=img.platform,
    )
