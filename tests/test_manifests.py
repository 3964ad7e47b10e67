from __future__ import annotations

import json

import pytest

from regplan.scan.layout import Digest, parse_digest
from regplan.scan.manifests import ManifestKind, parse

A, B, C, S = (f"sha256:{c * 64}" for c in "abcd")


def d(text: str) -> Digest:
    return parse_digest(text)


def desc(digest: str, mt: str = "application/octet-stream") -> dict[str, object]:
    return {"mediaType": mt, "digest": digest, "size": 1}


CASES = [
    (
        "schema1 (signed)",
        {
            "schemaVersion": 1,
            "name": "x",
            "fsLayers": [{"blobSum": A}, {"blobSum": A}, {"blobSum": B}],
            "signatures": [{"protected": "x"}],
        },
        ManifestKind.SCHEMA1,
        {A, B},
        set(),
        None,
    ),
    (
        "schema2",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": desc(A),
            "layers": [desc(B), desc(C)],
        },
        ManifestKind.SCHEMA2,
        {A, B, C},
        set(),
        None,
    ),
    (
        "OCI manifest with mediaType",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc(A),
            "layers": [desc(B)],
        },
        ManifestKind.OCI_MANIFEST,
        {A, B},
        set(),
        None,
    ),
    (
        "OCI manifest without mediaType, config is a reference",
        {"schemaVersion": 2, "config": desc(A), "layers": []},
        ManifestKind.OCI_MANIFEST,
        {A},
        set(),
        None,
    ),
    (
        "OCI referrer with subject",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc(A),
            "layers": [desc(B)],
            "subject": desc(S),
        },
        ManifestKind.OCI_MANIFEST,
        {A, B},
        set(),
        S,
    ),
    (
        "Docker manifest list",
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [desc(A), desc(B)],
        },
        ManifestKind.MANIFEST_LIST,
        set(),
        {A, B},
        None,
    ),
    (
        "OCI index without mediaType",
        {"schemaVersion": 2, "manifests": [desc(C)]},
        ManifestKind.OCI_INDEX,
        set(),
        {C},
        None,
    ),
]


@pytest.mark.parametrize(
    ("doc", "kind", "blobs", "children", "subject"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_references(
    doc: dict[str, object],
    kind: ManifestKind,
    blobs: set[str],
    children: set[str],
    subject: str | None,
) -> None:
    m = parse(json.dumps(doc).encode())
    assert m.known
    assert m.kind == kind
    assert m.blobs == tuple(sorted({d(x) for x in blobs}))
    assert m.children == tuple(sorted({d(x) for x in children}))
    assert m.subject == (d(subject) if subject else None)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x00\xffnot json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schemaVersion": 3}', "unknown schemaVersion"),
        (b'{"schemaVersion": 2, "mediaType": "application/x-weird"}', "unknown manifest mediaType"),
        (b'{"schemaVersion": 2, "config": {"digest": "sha256:xyz"}, "layers": []}', "config"),
        (b'{"schemaVersion": 2, "manifests": "nope"}', "not a list"),
        (b'{"schemaVersion": 1, "fsLayers": [{}]}', "without blobSum"),
    ],
)
def test_unreadable_fails_closed(data: bytes, error: str) -> None:
    """Never 'references nothing': the result says it is not known, and why."""
    m = parse(data)
    assert not m.known
    assert m.kind == ManifestKind.UNKNOWN
    assert m.error is not None
    assert error in m.error
