"""The real distribution registry and skopeo, driven from tests.

Two versions: 2.8 (Debian's ``docker-registry``) and 3.1 (distribution v3.1.1, the
``registry:3`` image's binary: ``../shared/registry/registry-v3`` beside the
repository, or ``REGPLAN_REGISTRY_V3``). Every test that runs a registry runs on both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result

from regplan.cli import cli
from regplan.demo.samples import DemoImages, Index, Pushable, demo_pushes, write_oci_layout
from regplan.scan.layout import attached_subject
from regplan.storage.fs.fsscan import scan
from regplan.storage.fs.fsstorage import FsStorage
from regplan.storage.objects import objscan
from regplan.storage.objects.bucket import ObjectStorage

SKOPEO = "skopeo"
VERSIONS = ("2.8", "3.1")
V3_ENV = "REGPLAN_REGISTRY_V3"
V3_SHARED = Path(__file__).resolve().parents[3] / "shared" / "registry" / "registry-v3"
"""Where the workplace keeps the v3 build (beside the repository, as CI's clone has it)."""


def htpasswd_file(path: Path, user: str, secret: str) -> Path:
    """A bcrypt htpasswd file (Apache's ``htpasswd``) for the registry's ``auth``;
    skipped without the tool, unless CI requires the real parts."""
    if shutil.which("htpasswd") is None:
        if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
            pytest.fail("htpasswd missing (apt-get install apache2-utils)")
        pytest.skip("htpasswd missing (apt-get install apache2-utils)")
    subprocess.run(["htpasswd", "-Bbc", str(path), user, secret], check=True, capture_output=True)
    return path


def registry_binary(version: str) -> tuple[str | None, str]:
    """(the registry's command for ``version`` or None, how to get it)."""
    if version == "2.8":
        return shutil.which("docker-registry"), "apt-get install docker-registry"
    found = os.environ.get(V3_ENV) or str(V3_SHARED)
    usable = os.path.isfile(found) and os.access(found, os.X_OK)
    return (found if usable else None), f"{found} (or set {V3_ENV})"


def require_binaries(version: str = "2.8") -> str:
    """The registry's command for ``version``. Skip when it or skopeo is missing, unless
    CI demands the real registry (REGPLAN_REQUIRE_REAL_REGISTRY=1): then fail."""
    registry, where = registry_binary(version)
    missing = [] if registry else [f"registry {version}: {where}"]
    if shutil.which(SKOPEO) is None:
        missing.append("skopeo (apt-get install skopeo)")
    if not missing:
        assert registry is not None
        return registry
    message = f"real registry tests need {'; '.join(missing)}"
    if os.environ.get("REGPLAN_REQUIRE_REAL_REGISTRY") == "1":
        pytest.fail(message + "; REGPLAN_REQUIRE_REAL_REGISTRY=1 makes this a failure")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RealRegistry:
    """One registry (``serve``) on 127.0.0.1 over a filesystem root or a bucket."""

    def __init__(
        self,
        root: Path,
        work: Path,
        *,
        version: str = "2.8",
        storage: str = "",
        extra: str = "",
        tls: tuple[Path, Path] | None = None,
        driver: str = "",
    ) -> None:
        """``version``: 2.8 or 3.1 (VERSIONS), ``storage``: more lines under ``storage:``
        (indented two spaces), ``extra``: more top-level sections (auth ...), ``tls``:
        (certificate, key) to serve https, ``driver``: the storage driver's line (default:
        filesystem over ``root``)."""
        self.version = version
        self.binary = require_binaries(version)
        self.root = root
        self.driver = driver or f"filesystem: {{rootdirectory: {root}}}"
        self.work = work
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        self.config = work / f"registry-{self.port}.yml"
        self.configure(storage=storage, extra=extra)

    @classmethod
    def on_store(cls, tmp_path: Path, *, version: str, driver: str) -> RealRegistry:
        """A registry whose storage is an object store (``driver``: its line), redirects
        off (the client is sent to the registry, not to the store), its files in
        ``tmp_path/work``."""
        work = tmp_path / "work"
        work.mkdir()
        return cls(
            tmp_path / "unused",
            work,
            version=version,
            driver=driver,
            storage="  redirect: {disable: true}\n",
        )

    def configure(self, *, storage: str = "", extra: str = "") -> None:
        """Write the config (takes effect at the next start)."""
        self.config.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            "storage:\n"
            f"  {self.driver}\n"
            "  delete: {enabled: true}\n"
            f"{storage}"
            f"http: {{addr: {self.host}{self._tls()}}}\n"
            f"{extra}"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self._n = 0

    def _tls(self) -> str:
        if self.tls is None:
            return ""
        return f", tls: {{certificate: {self.tls[0]}, key: {self.tls[1]}}}"

    def start(self) -> None:
        log = (self.work / f"registry-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(  # without AWS_*: AWS_CA_BUNDLE kills its S3 driver
            [self.binary, "serve", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                unverified = ssl._create_unverified_context()  # noqa: S323 (our own test cert)
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1, context=unverified) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if e.code == 401:  # up, behind authentication
                    return
                time.sleep(0.05)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
            if self.proc.poll() is not None:
                break
        raise RuntimeError(f"registry did not start; log in {log.name}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """The registry caches blob descriptors: restart after changing the tree."""
        self.stop()
        self.start()

    def _skopeo(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SKOPEO, "--insecure-policy", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def push(self, repo: str, tag: str | None, item: Pushable) -> None:
        self._n += 1
        layout = self.work / f"push-{self._n}"
        write_oci_layout(layout, {"x": item})
        ref = f"{repo}:{tag}" if tag else f"{repo}@{item.digest}"
        extra = ["--all"] if isinstance(item, Index) else []
        r = self._skopeo(
            "copy",
            "-q",
            "--dest-tls-verify=false",
            "--preserve-digests",
            *extra,
            f"oci:{layout}:x",
            f"docker://{self.host}/{ref}",
        )
        assert r.returncode == 0, r.stderr
        shutil.rmtree(layout)

    def pull(self, ref: str) -> bool:
        """True when every manifest and blob of ``ref`` (repo:tag or repo@digest) arrives intact."""
        out = Path(tempfile.mkdtemp(prefix="pull-", dir=self.work))
        r = self._skopeo(
            "copy",
            "-q",
            "--all",
            "--src-tls-verify=false",
            f"docker://{self.host}/{ref}",
            f"oci:{out}:x",
        )
        shutil.rmtree(out, ignore_errors=True)
        return r.returncode == 0

    def not_pulled(self, refs: Iterable[str]) -> list[str]:
        """The refs that do not ``pull``; a few pulled at once (each is a skopeo process
        that mostly waits on the registry)."""
        ordered = sorted(refs)
        with ThreadPoolExecutor(max_workers=4) as pool:
            pulled = list(pool.map(self.pull, ordered))
        return [ref for ref, ok in zip(ordered, pulled, strict=True) if not ok]

    def _request(
        self,
        method: str,
        url: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        if not url.startswith("http"):
            url = f"http://{self.host}{url}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def api_push(self, repo: str, ref: str, item: Pushable) -> None:
        """Push as cosign does, straight through the API: each blob by POST then PUT with
        its digest, then the manifest by PUT to a tag or, for a referrer, its digest
        (an index: its children first, by digest)."""
        if isinstance(item, Index):
            for child in item.children:
                self.api_push(repo, str(child.digest), child)
        else:
            for blob in item.blobs:
                status, headers, _ = self._request("POST", f"/v2/{repo}/blobs/uploads/")
                assert status == 202, status
                location = headers["Location"]
                sep = "&" if "?" in location else "?"
                status, _, body = self._request(
                    "PUT",
                    f"{location}{sep}digest={blob.digest}",
                    blob.data,
                    {"Content-Type": "application/octet-stream"},
                )
                assert status == 201, (status, body)
        status, _, body = self._request(
            "PUT",
            f"/v2/{repo}/manifests/{ref}",
            item.manifest.data,
            {"Content-Type": item.manifest.media_type},
        )
        assert status == 201, (status, body)

    def fetch(self, repo: str, ref: str) -> bool:
        """GET a manifest (by tag or digest) and every blob it names through the API, each
        checked against its digest: what ``cosign verify`` downloads of a signature."""
        accept = ", ".join(
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
            ]
        )
        status, _, body = self._request(
            "GET", f"/v2/{repo}/manifests/{ref}", None, {"Accept": accept}
        )
        if status != 200:
            return False
        doc = json.loads(body)
        if ref.startswith("sha256:") and "sha256:" + hashlib.sha256(body).hexdigest() != ref:
            return False
        digests = [d["digest"] for d in (doc.get("config"), *doc.get("layers", [])) if d]
        for digest in digests:
            status, _, data = self._request("GET", f"/v2/{repo}/blobs/{digest}")
            if status != 200 or "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                return False
        return all(self.fetch(repo, m["digest"]) for m in doc.get("manifests", []))

    def delete_manifest(self, repo: str, digest: object) -> None:
        """DELETE /v2/<repo>/manifests/<digest> (storage.delete.enabled is on)."""
        req = urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{digest}", method="DELETE"
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202

    def delete_tag(self, repo: str, tag: str) -> tuple[int, bytes]:
        """DELETE /v2/<repo>/manifests/<tag>: (status, body). v3 deletes the tag
        (distribution#3427); 2.8 deletes by digest only."""
        status, _, body = self._request("DELETE", f"/v2/{repo}/manifests/{tag}")
        return status, body

    def garbage_collect(self, *flags: str) -> str:
        r = subprocess.run(
            [self.binary, "garbage-collect", *flags, str(self.config)],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        )
        assert r.returncode == 0, r.stderr
        return r.stdout + r.stderr


Serve = Callable[..., RealRegistry]


def copy_of(pushed: tuple[Path, DemoImages], tmp_path: Path) -> Path:
    """A private copy of the pushed tree (each test changes its own)."""
    root = tmp_path / "root"
    shutil.copytree(pushed[0], root, symlinks=True)
    return root


def all_refs(root: Path) -> set[str]:
    """Every tag and every revision (by digest) the storage holds."""
    inv = scan(FsStorage.locate(root))
    refs = set()
    for name, repo in inv.repositories.items():
        refs |= {f"{name}:{t}" for t in repo.tags}
        refs |= {f"{name}@{d}" for d in repo.revisions}
    return refs


def tls_pair(work: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files (the cert is
    its own CA: give it as --ca-cert)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = work / "tls.crt", work / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def push_demo(reg: RealRegistry) -> DemoImages:
    """The demo's images pushed with skopeo (multi-arch with --all), cosign signatures
    and other attached tags through the API, as cosign pushes them."""
    images = demo_pushes()
    for repo, tag, item in images.pushes:
        if tag is not None and attached_subject(tag) is not None:
            reg.api_push(repo, tag, item)
        else:
            reg.push(repo, tag, item)
    return images


def bucket_refs(storage: ObjectStorage) -> set[str]:
    """Every tag (repo:tag) and revision (repo@digest) an object store's tree holds."""
    inv = objscan.scan(storage)
    out = set()
    for name, repo in inv.repositories.items():
        out |= {f"{name}:{t}" for t in repo.tags}
        out |= {f"{name}@{d}" for d in repo.revisions}
    return out


def run(*args: str) -> Result:
    """regplan's command line, in this process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def gc_counts(reg: RealRegistry) -> tuple[int, int, int]:
    """(blobs marked, blobs eligible, manifests eligible) by the registry's own
    ``garbage-collect --dry-run``."""
    out = reg.garbage_collect("--dry-run")
    found = re.search(r"(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible", out)
    assert found is not None, out
    marked, blobs, manifests = found.groups()
    return int(marked), int(blobs), int(manifests)


Objects = Callable[..., dict[str, tuple[int, str, str]]]
"""A store's objects under a prefix of the rootdirectory: key -> (size, hash, hash)."""


@attrs.frozen
class OnObjects:
    """A real registry serving from an object store, the demo pushed into it."""

    reg: RealRegistry
    storage: ObjectStorage
    objects: Objects
    """The tests' own listing of the store (its SDK, apart from regplan's)."""
    secrets: tuple[str, ...]
    """What no plan may hold (the config's keys)."""
    images: DemoImages

    def listing(self, prefix: str = "docker/") -> dict[str, tuple[int, str, str]]:
        return self.objects(self.storage, prefix)


def s3_driver_line(storage: Any, endpoint: str, version: str) -> str:
    """The s3 driver's parameters for an S3Storage on moto's server (tests/s3server.py);
    v3's driver addresses the bucket by host name unless told otherwise (2.8's used the
    path with a regionendpoint)."""
    from tests.s3server import ACCESS, SECRET

    path_style = ", forcepathstyle: true" if version != "2.8" else ""
    return (
        f"s3: {{accesskey: {ACCESS}, secretkey: {SECRET}, region: us-east-1, "
        f"regionendpoint: '{endpoint}', bucket: {storage.bucket}, "
        f"rootdirectory: /{storage.rootdirectory}, secure: false, v4auth: true{path_style}}}"
    )


def azure_driver_line(storage: Any, endpoint: str) -> str:
    """The azure driver's parameters for an AzureStorage on Azurite (tests/azserver.py)."""
    from tests.azserver import ACCOUNT, KEY

    return (
        f"azure: {{accountname: {ACCOUNT}, accountkey: '{KEY}', container: {storage.container}, "
        f"serviceurl: '{endpoint}', rootdirectory: /{storage.rootdirectory}, "
        "credentials: {type: shared_key}}"
    )
