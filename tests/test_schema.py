"""plans/plan.schema.json describes the plans regplan writes, and only those."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from regplan.plans import codec
from tests.helpers import make_plan, selection

PLANS = Path(__file__).resolve().parent.parent / "plans"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((PLANS / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


def test_example_and_fresh_plans_validate(schema: dict[str, Any], demo_root: Path) -> None:
    jsonschema.validate(json.loads((PLANS / "example.plan.json").read_text()), schema)
    plan = make_plan(demo_root, selection(("old/repo", "team/app"), ("*",), prune=True))
    jsonschema.validate(codec.unstructure(plan), schema)


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.update(version=2),
        lambda p: p["targets"][0].update(kind="file"),
        lambda p: p["targets"][0].update(path="/etc/passwd"),
        lambda p: p["targets"][0].update(path="repositories/../../etc"),
        lambda p: p.update(extra=True),
    ],
)
def test_schema_rejects(schema: dict[str, Any], edit: Any) -> None:
    plan = json.loads((PLANS / "example.plan.json").read_text())
    edit(plan)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(plan, schema)
