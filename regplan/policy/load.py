"""Read a policy file: every mistake with its line and column, or the policy.

The file is YAML; its shape is ``policy.schema.json`` (what an editor validates
against too), checked with jsonschema, and each error is placed at the YAML node it
is about. What a schema cannot say is checked after: ages in range, regular
expressions that RE2 compiles (decide.patterns), globs of the right kind, names used
once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import IO, Any

import jsonschema

from regplan.decide import patterns
from regplan.decide.ages import parse_age
from regplan.decide.policy import Keep, Policy, Registry, Rule
from regplan.errors import PolicyError, SelectionError
from regplan.policy import yamldoc
from regplan.policy.yamldoc import DocPath, Key, Placed
from regplan.scan.layout import printable


@functools.cache
def schema() -> dict[str, Any]:
    text = resources.files("regplan.policy").joinpath("policy.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


MAX_BYTES = 1 << 20
"""A policy larger than this is not one (the plan holds its whole text)."""


def read_file(path: Path) -> Policy:
    return read(yamldoc.data_of_file(path, KIND), str(path))


def read_stream(f: IO[bytes], file: str) -> Policy:
    """The policy read from ``f`` (a file, a device or a pipe: at most the cap)."""
    return read(yamldoc.data_of_stream(f, file, KIND), file)


def read(data: bytes, file: str) -> Policy:
    """The policy in ``data`` (the bytes of ``file``); PolicyError lists every mistake."""
    text, doc, placed = yamldoc.read(data, file, KIND, _meaning_errors)
    return _policy(doc, placed, file, text, hashlib.sha256(data).hexdigest())


def _friendly(e: jsonschema.ValidationError, path: DocPath, where: str) -> str | None:
    """A policy's own words for two schema errors (yamldoc's for the rest)."""
    if e.validator == "anyOf" and isinstance(e.instance, dict):
        return f"{where}: give keep (what it keeps of the tags it selects), untagged, or both"
    if e.validator == "pattern" and "smhdw" in str(e.validator_value):
        age = printable(str(e.instance))
        return f"{where}: {age!r} is not an age (a number and a unit: s, m, h, d, w; 7d)"
    return None


def _dotted(path: DocPath) -> str:
    return yamldoc.dotted(path, "policy")


KIND = yamldoc.Kind(
    noun="policy",
    limit=MAX_BYTES,
    too_large="more than 1 MiB; a policy has at most 1 MiB",
    empty="a policy has version: 1 and rules",
    refuse=PolicyError,
    schema=schema,
    friendly=_friendly,
)


def _meaning_errors(doc: Any) -> Iterator[tuple[DocPath, str]]:
    """What the schema cannot say, of whatever parts have the schema's types."""
    names: set[str] = set()
    for i, item in enumerate(_list(_dict(doc).get("rules"))):
        rule, at, said = _dict(item), ("rules", i), f"rules[{i}]"
        name = rule.get("name")
        if isinstance(name, str) and name in names:
            yield (*at, "name"), f"{said}.name: {name!r} names two rules"
        names.add(name if isinstance(name, str) else "")
        for field in ("repositories", "exclude"):
            for j, glob in _strings(rule.get(field)):
                if any(c in glob for c in ":@") or glob.startswith("/") or glob.endswith("/"):
                    yield (
                        (*at, field, j),
                        (
                            f"{said}.{field}[{j}]: {printable(glob)!r} is not a repository glob "
                            "(no tag, digest or leading or trailing /)"
                        ),
                    )
        for j, glob in _strings(rule.get("tags")):
            if any(c in glob for c in "/:@"):
                yield (
                    (*at, "tags", j),
                    (f"{said}.tags[{j}]: {printable(glob)!r} is not a tag glob (no / : or @)"),
                )
        selecting = [f for f in ("tags", "tags_regex", "exclude_tags_regex") if f in rule]
        if "keep" not in rule and selecting:
            yield (
                (*at, Key(selecting[0])),
                (f"{said}: a rule without keep selects no tags (it has only untagged)"),
            )
        if "tags" in rule and "tags_regex" in rule:
            yield (*at, "tags_regex"), f"{said}: tags and tags_regex do not go together"
        yield from _patterns(rule, at, said)
        if set(_dict(rule.get("keep"))) == {"by"}:
            yield (
                (*at, "keep"),
                (
                    f"{said}.keep: by says how to rank, not what to keep (add newest, within, "
                    "tags, regex or all; newest: 0 keeps none)"
                ),
            )
    registry = _dict(_dict(doc).get("registry"))
    if "gc_min_age" in registry and registry.get("gc") is not True:
        yield ("registry", "gc_min_age"), "registry.gc_min_age goes with gc: true"
    for field in ("uploads_older_than", "leftovers_older_than", "gc_min_age"):
        yield from _age(registry.get(field), ("registry", field), f"registry.{field}")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> Iterator[tuple[int, str]]:
    return ((j, v) for j, v in enumerate(_list(value)) if isinstance(v, str))


def _patterns(rule: dict[str, Any], at: DocPath, said: str) -> Iterator[tuple[DocPath, str]]:
    keep = _dict(rule.get("keep"))
    for path, value in (
        ((*at, "tags_regex"), rule.get("tags_regex")),
        ((*at, "exclude_tags_regex"), rule.get("exclude_tags_regex")),
        ((*at, "keep", "regex"), keep.get("regex")),
    ):
        if not isinstance(value, str):
            continue
        try:
            patterns.compiled(value)
        except patterns.PatternError as e:
            yield path, f"{_dotted(path)}: {printable(value)!r} is not a regular expression ({e})"
    yield from _age(rule.get("untagged"), (*at, "untagged"), f"{said}.untagged")
    for field in ("within", "pulled_within"):
        yield from _age(keep.get(field), (*at, "keep", field), f"{said}.keep.{field}")


def _age(value: Any, path: DocPath, name: str) -> Iterator[tuple[DocPath, str]]:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]+[smhdw]", value):
        return  # the schema says what is wrong with it
    try:
        parse_age(value)
    except SelectionError as e:
        yield path, f"{name}: {e}"


def _keep(k: dict[str, Any]) -> Keep:
    """A rule's keep: each key of the schema's is the ``Keep`` field of its name."""
    fields: dict[str, Any] = {n: tuple(v) if isinstance(v, list) else v for n, v in k.items()}
    return Keep(**fields)


def _policy(doc: dict[str, Any], placed: Placed, file: str, text: str, sha256: str) -> Policy:
    rules = []
    for i, r in enumerate(doc["rules"]):
        k = r.get("keep")
        rules.append(
            Rule(
                name=r["name"],
                where=f"{file}:{placed.line(('rules', i))}",
                repositories=tuple(r["repositories"]),
                exclude=tuple(r.get("exclude", ())),
                tags=tuple(r.get("tags", ("*",))),
                tags_regex=r.get("tags_regex"),
                exclude_tags_regex=r.get("exclude_tags_regex"),
                keep=None if k is None else _keep(k),
                untagged=r.get("untagged"),
                allow_empty=r.get("allow_empty", False),
            )
        )
    reg = doc.get("registry", {})
    registry = Registry(
        uploads_older_than=reg.get("uploads_older_than"),
        leftovers_older_than=reg.get("leftovers_older_than"),
        gc=reg.get("gc", False),
        gc_min_age=reg.get("gc_min_age"),
        prune=reg.get("prune", False),
    )
    return Policy(file=file, text=text, sha256=sha256, rules=tuple(rules), registry=registry)
