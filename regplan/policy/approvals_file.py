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
from typing import IO, Any

import jsonschema
import yaml

from regplan.errors import RegplanError
from regplan.plans.rule import Rule, is_glob
from regplan.policy.load import DocPath, Key, Placed, shared_anchor
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
    try:
        with path.open("rb") as f:
            return read_stream(f, str(path))
    except OSError as e:
        raise RuleFileError(str(path), [f"{path}: {e.strerror}"]) from None


def read_stream(f: IO[bytes], file: str) -> Rule:
    try:
        data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise RuleFileError(file, [f"{file}: {e.strerror}"]) from None
    return read(data, file)


def read(data: bytes, file: str) -> Rule:
    """The rule in ``data`` (the bytes of ``file``); RuleFileError lists every mistake."""
    if len(data) > MAX_BYTES:
        raise RuleFileError(file, [f"{file}: more than 64 KiB; an approval rule is a few lines"])
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise RuleFileError(file, [f"{file}: not UTF-8 text (byte {e.start})"]) from None
    node, doc = _parse(text, file)
    placed = Placed(node)
    errors = [placed.say(path, msg) for path, msg in _schema_errors(doc)]
    if not errors:
        errors += [placed.say(path, msg) for path, msg in _meaning_errors(doc)]
    errors += placed.duplicates()
    if errors:
        lines = [f"{file}:{line}:{column}: {msg}" for line, column, msg in sorted(set(errors))]
        raise RuleFileError(file, lines)
    return Rule(
        required_approvals=int(doc["required_approvals"]),
        planners=tuple(doc["planners"]),
        approvers=tuple(doc["approvers"]),
        planner_counts_as_approver=doc.get("planner_counts_as_approver", False),
        file=file,
    )


def _parse(text: str, file: str) -> tuple[yaml.Node, Any]:
    bad = next((i for i, c in enumerate(text) if not (c.isprintable() or c in "\t\n\r")), None)
    if bad is not None:
        line = text.count("\n", 0, bad) + 1
        column = bad - text.rfind("\n", 0, bad)
        name = f"U+{ord(text[bad]):04X}"
        raise RuleFileError(file, [f"{file}:{line}:{column}: {name} is not allowed in a rule"])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise RuleFileError(file, [f"{where}: not YAML: {printable(str(e.problem))}"]) from None
    except yaml.YAMLError as e:
        raise RuleFileError(file, [f"{file}: not YAML: {printable(str(e))[:200]}"]) from None
    except RecursionError:
        raise RuleFileError(file, [f"{file}: nested too deeply to be a rule"]) from None
    finally:
        loader.dispose()
    if node is None:
        say = "empty; a rule has version: 1, required_approvals, planners and approvers"
        raise RuleFileError(file, [f"{file}: {say}"])
    shared = shared_anchor(node)
    if shared is not None:
        m = shared.start_mark
        say = "anchors and aliases are not allowed"
        raise RuleFileError(file, [f"{file}:{m.line + 1}:{m.column + 1}: {say}"])
    return node, doc


def _schema_errors(doc: Any) -> Iterator[tuple[DocPath, str]]:
    validator = jsonschema.Draft202012Validator(schema())
    for e in validator.iter_errors(doc):
        path: DocPath = tuple(e.absolute_path)
        where = _dotted(path)
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = sorted(e.schema.get("properties", {}))
            for k in sorted(set(e.instance) - set(allowed), key=str):
                yield (
                    (*path, Key(k)),
                    f"{where}: unknown key {printable(str(k))!r} (expected one of: "
                    f"{', '.join(allowed)})",
                )
        elif e.validator == "required":
            yield path, f"{where}: {e.message.replace(' is a required property', ' is missing')}"
        else:
            yield path, f"{where}: {printable(e.message)[:200]}"


def _dotted(path: DocPath) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "the rule"


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
