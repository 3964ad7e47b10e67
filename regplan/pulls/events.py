"""A notification envelope as distribution POSTs it (pure): the manifest pulls in it.

distribution sends ``{"events": [...]}`` with media type ``MEDIA_TYPE`` (3.x: ``...v2+json``,
the same envelope); each event has
an ``id``, a ``timestamp``, an ``action`` and a ``target`` (``repository``, ``digest``,
``mediaType``, ``url``, ``tag`` when pulled by tag). A pull's key is its request's id
(the one the access log holds too), or the event's. Only ``pull`` events of manifests
are pulls here: a blob's pull, a push, a delete or a mount counts toward nothing. An
envelope with anything malformed is refused whole (``EnvelopeError``): the registry
sends it again, so nothing half read is recorded.
"""

from __future__ import annotations

import json
from typing import Any

from regplan.pulls.pull import Pull, PullsError, manifest_path, parse_time, reference

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
MEDIA_TYPES = frozenset({MEDIA_TYPE, "application/vnd.docker.distribution.events.v2+json"})
"""What distribution 2.x sends, and 3.x (the same envelope)."""

MANIFEST_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)


class EnvelopeError(PullsError):
    """Not an envelope of events, or an event without what a pull needs."""


def pulls(body: bytes) -> list[Pull]:
    """The manifest pulls of an envelope; EnvelopeError (one line) when it is not one."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise EnvelopeError(f"not JSON ({str(e)[:80]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
        raise EnvelopeError("not an envelope: no events list")
    out = []
    for n, event in enumerate(doc["events"]):
        found = _pull(event, n)
        if found is not None:
            out.append(found)
    return out


def _field(obj: dict[str, Any], name: str, n: int) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value:
        raise EnvelopeError(f"event {n}: {name} missing or not a string")
    return value


def _pull(event: object, n: int) -> Pull | None:
    if not isinstance(event, dict):
        raise EnvelopeError(f"event {n}: not an object")
    key = _field(event, "id", n)
    if _field(event, "action", n) != "pull":
        return None
    target = event.get("target")
    if not isinstance(target, dict):
        raise EnvelopeError(f"event {n}: target missing")
    repo = _field(target, "repository", n)
    digest = _field(target, "digest", n)
    media = _field(target, "mediaType", n)
    url = target.get("url")
    path = url.split("://", 1)[-1].partition("/")[2] if isinstance(url, str) else ""
    if f"/{path}".split("?")[0].rpartition("/")[0].endswith("/blobs") or (
        media not in MANIFEST_TYPES and manifest_path(f"/{path}") is None
    ):
        return None  # a blob (layer, config): not a pull of an image
    at = parse_time(_field(event, "timestamp", n))
    if at is None:
        raise EnvelopeError(f"event {n}: timestamp is not RFC 3339")
    tag = target.get("tag") or None
    if reference(repo, digest) != (digest, None) or (
        tag is not None and (not isinstance(tag, str) or reference(repo, tag) != (None, tag))
    ):
        raise EnvelopeError(f"event {n}: not a repository, digest or tag")
    request = event.get("request")
    rid = request.get("id") if isinstance(request, dict) else None
    named = f"req:{rid}" if isinstance(rid, str) and rid else f"event:{key}"
    return Pull(key=named, repo=repo, at=at, digest=digest, tag=tag)
