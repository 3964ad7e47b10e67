"""Read an approval rule file (``regplan-approvals.yml``): every mistake with its line
and column, or the rule (``regplan.plans.rule``).

The file is YAML, kept in git beside the policy; its shape is
``approvals.schema.json``, checked as ``load`` checks a policy (jsonschema, each error
placed at the YAML node it is about). What a schema cannot say is checked after: a
principal listed twice, and a count no list of named approvers can reach.

```yaml
version: 1
required_approvals: 2
planners: [alice@ops, carol@ops]
approvers: [bob@review, dave@review, "*@security"]
planner_counts_as_approver: false
```
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from regplan.errors import RegplanError
from regplan.plans.rule import Rule, is_glob
from regplan.policy import yamldoc
from regplan.policy.yamldoc import DocPath
from regplan.scan.layout import printable

ENV = "REGPLAN_APPROVALS"
MAX_BYTES = 64 * 1024
"""A rule file is a few lines: anything larger is not one."""


class RuleFileError(RegplanError):
    """An approval rule file with mistakes: all of them on one line, each
    ``FILE:LINE:COLUMN: message`` (exit 1)."""

    def __init__(self, file: str, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.file = file
        self.errors = errors


@functools.cache
def schema() -> dict[str, Any]:
    text = resources.files("regplan.policy").joinpath("approvals.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def read_file(path: Path) -> Rule:
    """The rule in the file at ``path`` (a FIFO or a device is read to the cap, never
    without end)."""
    return read(yamldoc.data_of_file(path, KIND), str(path))


def read(data: bytes, file: str) -> Rule:
    """The rule in ``data`` (the bytes of ``file``); RuleFileError lists every mistake."""
    _, doc, _ = yamldoc.read(data, file, KIND, _meaning_errors)
    return Rule(
        required_approvals=int(doc["required_approvals"]),
        planners=tuple(doc["planners"]),
        approvers=tuple(doc["approvers"]),
        planner_counts_as_approver=doc.get("planner_counts_as_approver", False),
        file=file,
    )


def _meaning_errors(doc: dict[str, Any]) -> Iterator[tuple[DocPath, str]]:
    """What the schema cannot say (of a document the schema accepts)."""
    for field in ("planners", "approvers"):
        seen: set[str] = set()
        for i, p in enumerate(doc[field]):
            if p in seen:
                yield (field, i), f"{field}[{i}]: {printable(p)!r} listed twice"
            seen.add(p)
    approvers = doc["approvers"]
    if not any(map(is_glob, approvers)) and doc["required_approvals"] > len(set(approvers)):
        yield (
            ("required_approvals",),
            f"required_approvals: {doc['required_approvals']} but approvers names "
            f"{len(set(approvers))}: no plan could ever be applied",
        )


KIND = yamldoc.Kind(
    noun="rule",
    limit=MAX_BYTES,
    too_large="more than 64 KiB; an approval rule is a few lines",
    empty="a rule has version: 1, required_approvals, planners and approvers",
    refuse=RuleFileError,
    schema=schema,
    meaning_despite_schema=False,  # its meaning's checks take the schema's shape as given
)
