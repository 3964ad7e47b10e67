"""Manifest bytes -> the digests they reference. Pure, and fail closed.

A manifest we cannot read is never taken to reference nothing: ``parse`` then
returns ``known=False`` and the planner keeps everything it might reference.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from regplan.scan.layout import Digest, parse_digest


class ManifestKind(enum.Enum):
    SCHEMA1 = "docker-schema1"
    SCHEMA2 = "docker-schema2"
    OCI_MANIFEST = "oci-manifest"
    MANIFEST_LIST = "docker-manifest-list"
    OCI_INDEX = "oci-index"
    UNKNOWN = "unknown"


SCHEMA2_MT = "application/vnd.docker.distribution.manifest.v2+json"
LIST_MT = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA1_MTS = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)
OCI_MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX_MT = "application/vnd.oci.image.index.v1+json"


@attrs.frozen(kw_only=True)
class Manifest:
    """What one manifest references.

    ``blobs``: layers and config (plain blobs). ``children``: manifests an index
    lists (revisions of the same repository). ``subject``: the manifest this one
    refers to (OCI referrers). ``known`` is False when the bytes could not be
    understood; ``error`` then says why.
    """

    kind: ManifestKind
    blobs: tuple[Digest, ...] = ()
    """Sorted, distinct (a tuple: a registry holds hundreds of thousands of these)."""
    children: tuple[Digest, ...] = ()
    """Sorted, distinct."""
    subject: Digest | None = None
    config: Digest | None = None
    error: str | None = None

    @property
    def known(self) -> bool:
        return self.error is None

    @classmethod
    def unreadable(cls, error: str) -> Manifest:
        return cls(kind=ManifestKind.UNKNOWN, error=error)


class _UnreadableError(Exception):
    pass


Intern = Callable[[str], Digest]
"""Turns text into a Digest; a scan passes one that returns one object per digest."""


def _digest(obj: Any, where: str, intern: Intern) -> Digest:
    if not isinstance(obj, dict) or not isinstance(obj.get("digest"), str):
        raise _UnreadableError(f"{where}: descriptor without a digest")
    try:
        return intern(obj["digest"])
    except ValueError as e:
        raise _UnreadableError(f"{where}: {e}") from None


def _descriptors(doc: dict[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise _UnreadableError(f"{key} is not a list")
    return value


def parse(data: bytes, intern: Intern = parse_digest) -> Manifest:
    """Classify a manifest and list its references; never raises."""
    try:
        doc = json.loads(data)
    except RecursionError:
        return Manifest.unreadable("JSON nested too deeply")
    except (ValueError, UnicodeDecodeError) as e:
        return Manifest.unreadable(f"not JSON: {e}")
    if not isinstance(doc, dict):
        return Manifest.unreadable("not a JSON object")
    try:
        return _parse(doc, intern)
    except _UnreadableError as e:
        return Manifest.unreadable(str(e))


def _parse(doc: dict[str, Any], intern: Intern) -> Manifest:
    media_type = doc.get("mediaType")
    version = doc.get("schemaVersion")
    subject = _digest(doc["subject"], "subject", intern) if "subject" in doc else None

    if version == 1 or media_type in SCHEMA1_MTS:
        layers = _descriptors(doc, "fsLayers")
        blobs = set()
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict) or not isinstance(layer.get("blobSum"), str):
                raise _UnreadableError(f"fsLayers[{i}] without blobSum")
            try:
                blobs.add(intern(layer["blobSum"]))
            except ValueError as e:
                raise _UnreadableError(f"fsLayers[{i}]: {e}") from None
        return Manifest(kind=ManifestKind.SCHEMA1, blobs=_distinct(blobs))

    if version != 2:
        raise _UnreadableError(f"unknown schemaVersion {version!r}")

    if media_type in (LIST_MT, OCI_INDEX_MT) or (media_type is None and "manifests" in doc):
        kind = ManifestKind.MANIFEST_LIST if media_type == LIST_MT else ManifestKind.OCI_INDEX
        children = _distinct(
            _digest(m, f"manifests[{i}]", intern)
            for i, m in enumerate(_descriptors(doc, "manifests"))
        )
        return Manifest(kind=kind, children=children, subject=subject)

    if media_type in (SCHEMA2_MT, OCI_MANIFEST_MT) or (media_type is None and "config" in doc):
        kind = ManifestKind.SCHEMA2 if media_type == SCHEMA2_MT else ManifestKind.OCI_MANIFEST
        config = _digest(doc.get("config"), "config", intern)
        blobs = {config}
        blobs.update(
            _digest(m, f"layers[{i}]", intern) for i, m in enumerate(_descriptors(doc, "layers"))
        )
        return Manifest(kind=kind, blobs=_distinct(blobs), subject=subject, config=config)

    raise _UnreadableError(f"unknown manifest mediaType {media_type!r}")


def _distinct(digests: Iterable[Digest]) -> tuple[Digest, ...]:
    return tuple(sorted(set(digests)))


def created(config: bytes) -> str | None:
    """The ``created`` time of an image config, or None when it has none."""
    try:
        doc = json.loads(config)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    value = doc.get("created") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None
