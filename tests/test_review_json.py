"""``show --json`` (#33): each image's facts are fields (its size, what is attached to it),
and the document is what its schema (regplan/views/review.schema.json) says, field for
field."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from regplan.plans.planfile import InMemory
from regplan.views import render, reviewjson
from tests.helpers import make_plan, selection


@pytest.fixture
def doc(demo_root: Path) -> dict[str, Any]:
    """team/signed:v1 goes, with its signature and attestation."""
    plan = make_plan(demo_root, selection(("team/signed:v1",), ("*",)))
    text = "".join(reviewjson.review_json_chunks(InMemory(plan), render.unchecked(plan)))
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def images(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every image by name, with the verdict of the list it is in."""
    return {
        i["name"]: {**i, "verdict": verdict}
        for r in doc["repositories"]
        for verdict in ("removed", "kept", "untouched")
        for i in r[verdict]
    }


def test_each_image_lists_what_is_attached_to_it(doc: dict[str, Any]) -> None:
    """team/signed:v1 with its signature and attestation (their tags, kinds, verdicts);
    an image with nothing attached has an empty list, and so has an attached tag."""
    found = images(doc)
    v1 = found["team/signed:v1"]
    assert sorted(a["kind"] for a in v1["attached"]) == ["attestation", "signature"]
    assert all(a["tag"].startswith("sha256-") for a in v1["attached"])
    assert {a["verdict"] for a in v1["attached"]} == {v1["verdict"]}
    assert found["team/app:v1"]["attached"] == []
    signature = next(i for i in found.values() if i["kind"] == "signature")
    assert signature["attached"] == []


def test_the_document_is_what_its_schema_says(doc: dict[str, Any]) -> None:
    """Every field is in the schema, and the schema allows no other (a field added to the
    document without documenting it fails here)."""
    schema = json.loads(resources.files("regplan.views").joinpath("review.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)
    extra = json.loads(json.dumps(doc))
    extra["repositories"][0]["kept"][0]["undocumented"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(extra)
