"""Signed images on the real registry: signatures, attestations, an SBOM referrer and
its fallback tag pushed through the API as cosign and OCI 1.1 clients do; after each
apply and a restart, every kept image and each of its attached artefacts is fetched
through the registry (every digest checked), and the removed ones are gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from regplan.demo.samples import Image, attached_tag, cosign, image, index
from regplan.scan.layout import encoded_of
from tests.integration.realreg import RealRegistry, Serve

REPO = "test/app"


def regplan(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "regplan", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def plan_and_apply(root: Path, tmp_path: Path, name: str, *selection: str) -> None:
    key = tmp_path / "k"
    if not key.exists():
        regplan("keygen", str(key))
    plan = tmp_path / f"{name}.json"
    regplan("plan", "--root", str(root), "--key", str(key), "-o", str(plan), *selection)
    regplan("apply", str(plan), "--trust", f"{key}.pub")


def test_signatures_follow_their_image_through_the_real_registry(
    serve: Serve, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    reg: RealRegistry = serve(root)
    versions: dict[str, Image] = {}
    for n in ("v1", "v2", "v3"):
        versions[n] = image([{f"app/{n}": f"version {n}".encode()}])
        reg.push(REPO, n, versions[n])
    attached: dict[str, list[str]] = {n: [] for n in versions}
    for n, img in versions.items():  # signed after the images, as CI does
        for kind in ("sig", "att") if n != "v2" else ("sig",):
            tag = attached_tag(img, kind)
            reg.api_push(REPO, tag, cosign(img, REPO, kind=kind))
            attached[n].append(tag)
    sbom = image(
        [{"sbom.spdx.json": b'{"spdxVersion": "SPDX-2.3"}'}], subject=versions["v2"].manifest
    )
    reg.api_push(REPO, str(sbom.digest), sbom)  # a referrer, by digest
    fallback = f"sha256-{encoded_of(versions['v2'].digest)}"
    reg.api_push(REPO, fallback, index([sbom]))  # the referrers fallback tag
    attached["v2"] += [fallback, str(sbom.digest)]
    for refs in attached.values():
        assert all(reg.fetch(REPO, ref) for ref in refs)

    # keep the newest image; v2 is what the cluster runs (named as kubectl prints it)
    running = tmp_path / "running.txt"
    running.write_text(f"# kubectl get pods -o jsonpath=...\n{reg.host}/{REPO}:v2\n")
    plan_and_apply(root, tmp_path, "p1", f"--image={REPO}", "--keep-last=1", f"--protect={running}")
    reg.restart()
    assert not reg.pull(f"{REPO}:v1")
    assert not any(reg.fetch(REPO, ref) for ref in attached["v1"])
    for n in ("v2", "v3"):
        assert reg.pull(f"{REPO}:{n}")
        assert all(reg.fetch(REPO, ref) for ref in attached[n]), n

    # v2 goes: its signature, its SBOM referrer and the fallback tag go with it
    plan_and_apply(root, tmp_path, "p2", f"--image={REPO}:v2")
    reg.restart()
    assert not reg.pull(f"{REPO}:v2")
    assert not any(reg.fetch(REPO, ref) for ref in attached["v2"])
    assert reg.pull(f"{REPO}:v3")
    assert all(reg.fetch(REPO, ref) for ref in attached["v3"])
