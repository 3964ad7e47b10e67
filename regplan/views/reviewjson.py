"""``show --json``: the review as one JSON document for automation. Pure: plan in, text out.

Not the plan file (that is what is signed and applied): the plan in image terms,
each repository with its images removed, kept and untouched and the rule that
decided each, the signatures as checked, the ``--protect`` lines, problems, and
what the storage keeps. Written as a stream, one repository at a time: memory
does not grow with the plan. ``review.schema.json`` beside this module is the
document's schema, field for field.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs

from regplan.plans.plan import Image, Verdict
from regplan.plans.planfile import Source
from regplan.plans.signing import Checked

FORMAT = "regplan.review"
VERSION = 1


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _image(i: Image, attached: Sequence[Image]) -> dict[str, Any]:
    return {
        "name": i.name,
        "tag": i.tag,
        "digest": i.digest,
        "kind": i.kind,
        "attached_to": i.attached_to,
        "attached": [
            {"tag": a.tag, "kind": a.kind, "verdict": a.verdict.value, "bytes": a.bytes}
            for a in attached
        ],
        "reason": i.reason,
        "bytes": i.bytes,
        "pushed": i.pushed,
        "created": i.created,
        "rule": i.rule,
        "rank": i.rank,
        **({} if i.pulls is None else {"last_pulled": i.last_pulled, "pulls": i.pulls}),
    }


def _repositories(images: Iterable[Image], counts: dict[str, int]) -> Iterator[dict[str, Any]]:
    """One object per repository (the images come sorted by repository); each image
    with the tags attached to it (signatures, attestations ...)."""
    for name, records in itertools.groupby(images, key=lambda i: i.repo):
        group = list(records)
        attached: dict[str, list[Image]] = defaultdict(list)
        for i in group:
            if i.attached_to is not None:
                attached[i.attached_to].append(i)
        repo: dict[str, Any] = {"name": name, **{v.value: [] for v in Verdict}}
        for i in group:
            mine = attached.get(f"{i.repo}@{i.digest}", []) if i.attached_to is None else []
            repo[i.verdict.value].append(_image(i, mine))
            counts[i.verdict.value] += 1
        yield repo


def _signature(c: Checked) -> dict[str, Any]:
    return {k: v.value if k == "state" else v for k, v in attrs.asdict(c).items()}


def _array(items: Iterable[object]) -> Iterator[str]:
    yield "["
    for n, item in enumerate(items):
        yield ("," if n else "") + "\n    " + _dump(item)
    yield "\n  ]"


def review_json_chunks(src: Source, signatures: Sequence[Checked]) -> Iterator[str]:
    """The document, piece by piece (``show --json``); see the module's docstring."""
    plan = src.header
    counts = dict.fromkeys((v.value for v in Verdict), 0)
    head = {
        "format": FORMAT,
        "version": VERSION,
        "plan_id": plan.plan_id,
        "created_at": plan.created_at,
        "root": plan.root,
        "command": list(plan.request.argv),
        "images_recorded": bool(src.counts.get("images")),
        "signatures": [_signature(c) for c in signatures],
        "protect": [attrs.asdict(p) for p in plan.request.selection.protect],
    }
    policy = plan.request.policy
    if policy is not None:  # the file and its hash; the plan file holds the text
        head["policy"] = {"file": policy.file, "sha256": policy.sha256}
    yield _dump(head)[:-1]
    yield ',\n  "repositories": '
    yield from _array(_repositories(src.images(), counts))
    yield ',\n  "problems": '
    yield from _array(
        {"code": p.code.value, "path": p.path, "message": p.message} for p in src.problems()
    )
    yield ',\n  "storage_kept": '
    yield from _array(attrs.asdict(k) for k in src.kept())
    s = plan.summary
    summary = {
        "directories": s.targets,
        "bytes": s.bytes,
        "by_kind": dict(s.by_kind),
        "images": counts,
    }
    yield f',\n  "summary": {_dump(summary)}\n}}\n'
