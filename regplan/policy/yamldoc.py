"""A YAML document a person keeps in git (a cleanup policy, an approval rule), read so
that every mistake is placed at its line and column: the text must be printable,
one document, no anchors or aliases (a few lines could stand for an exponential
tree), checked against its JSON schema with each error placed at the YAML node it is
about, then against what the schema cannot say (the caller's ``meaning``), and no key
given twice. ``load`` (policies) and ``approvals_file`` (approval rules) say what
their documents are; this reads them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs
import jsonschema
import yaml

from regplan.errors import RegplanError
from regplan.scan.layout import printable


@attrs.frozen
class Key:
    """A path's last step naming a mapping's key itself (an unknown key is written there)."""

    name: object


DocPath = tuple["str | int | Key", ...]
"""Where in the document: mapping keys and sequence indexes, from the top."""
Mistake = tuple[int, int, str]
"""(line, column, message), both from 1: one line of the error once the file is named."""


Refuse = Callable[[str, list[str]], RegplanError]
"""The error a kind of document raises: made of the file's name and its mistakes."""
Meaning = Callable[[Any], Iterable[tuple[DocPath, str]]]
"""What the schema cannot say, as (where, message) pairs."""
Friendly = Callable[[jsonschema.ValidationError, DocPath, str], str | None]
"""A kind's own words for a schema error (None: the general ones)."""


@attrs.frozen(kw_only=True)
class Kind:
    """What a kind of document is called and how its mistakes are raised."""

    noun: str
    """"policy", "rule": in messages ("is not allowed in a policy")."""
    limit: int
    too_large: str
    """Said of a file over ``limit`` bytes."""
    empty: str
    """Said of an empty document: what one holds."""
    refuse: Refuse
    schema: Callable[[], dict[str, Any]]
    friendly: Friendly = lambda *_: None
    meaning_despite_schema: bool = True
    """Check the meaning even when the schema found mistakes (the meaning's checks
    must then take any shape)."""


def data_of_file(path: Path, kind: Kind) -> bytes:
    """The bytes of the file at ``path`` (of which ``data_of_stream`` reads at most the cap)."""
    try:
        with path.open("rb") as f:
            return data_of_stream(f, str(path), kind)
    except OSError as e:
        raise kind.refuse(str(path), [f"{path}: {e.strerror}"]) from None


def data_of_stream(f: IO[bytes], file: str, kind: Kind) -> bytes:
    """What ``f`` holds: a file, a device (``/dev/zero``) or a pipe (stdin) alike, never
    more than the kind's limit and one byte of it, so that what has no end, or a huge
    file, is refused without being held."""
    try:
        return f.read(kind.limit + 1)
    except OSError as e:
        raise kind.refuse(file, [f"{file}: {e.strerror}"]) from None


def read(data: bytes, file: str, kind: Kind, meaning: Meaning) -> tuple[str, Any, Placed]:
    """The text, the document and where each node was written; ``kind.refuse`` lists
    every mistake (``FILE:LINE:COLUMN: message``) otherwise."""
    if len(data) > kind.limit:
        raise kind.refuse(file, [f"{file}: {kind.too_large}"])
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise kind.refuse(file, [f"{file}: not UTF-8 text (byte {e.start})"]) from None
    node, doc = _parse(text, file, kind)
    placed = Placed(node)
    errors = [placed.say(path, msg) for path, msg in _schema_errors(doc, kind)]
    if kind.meaning_despite_schema or not errors:
        errors += [placed.say(path, msg) for path, msg in meaning(doc)]
    errors += placed.duplicates()
    if errors:
        lines = [f"{file}:{line}:{column}: {msg}" for line, column, msg in sorted(set(errors))]
        raise kind.refuse(file, lines)
    return text, doc, placed


def _parse(text: str, file: str, kind: Kind) -> tuple[yaml.Node, Any]:
    bad = next((i for i, c in enumerate(text) if not (c.isprintable() or c in "\t\n\r")), None)
    if bad is not None:  # YAML allows none; say where, one line, without the character
        line = text.count("\n", 0, bad) + 1
        column = bad - text.rfind("\n", 0, bad)
        name = f"U+{ord(text[bad]):04X}"
        raise kind.refuse(file, [f"{file}:{line}:{column}: {name} is not allowed in a {kind.noun}"])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        what = printable(str(e.problem or e.context))
        raise kind.refuse(file, [f"{where}: not YAML: {what}"]) from None
    except yaml.YAMLError as e:
        what = printable(str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise kind.refuse(file, [f"{file}: not YAML: {what}"]) from None
    except RecursionError:
        raise kind.refuse(file, [f"{file}: nested too deeply to be a {kind.noun}"]) from None
    finally:
        loader.dispose()
    if node is None:
        raise kind.refuse(file, [f"{file}: empty; {kind.empty}"])
    shared = shared_anchor(node)
    if shared is not None:
        m = shared.start_mark
        say = "anchors and aliases are not allowed"
        raise kind.refuse(file, [f"{file}:{m.line + 1}:{m.column + 1}: {say}"])
    return node, doc


def _schema_errors(doc: Any, kind: Kind) -> Iterator[tuple[DocPath, str]]:
    validator = jsonschema.Draft202012Validator(kind.schema())
    for e in validator.iter_errors(doc):
        path: DocPath = tuple(e.absolute_path)
        yield from _friendly(e, path, kind)


def _friendly(
    e: jsonschema.ValidationError, path: DocPath, kind: Kind
) -> Iterator[tuple[DocPath, str]]:
    where = dotted(path, kind.noun)
    own = kind.friendly(e, path, where)
    if own is not None:
        yield path, own
    elif e.validator == "additionalProperties" and isinstance(e.instance, dict):
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


def dotted(path: DocPath, noun: str) -> str:
    """``rules[0].keep.last``; the document itself is "the NOUN"."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or f"the {noun}"


def shared_anchor(root: yaml.Node) -> yaml.Node | None:
    """The first node reached twice (an alias), walking each node once."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            return node
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            todo += [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            todo += node.value
    return None


class Placed:
    """The YAML nodes behind the document: where a path into it was written."""

    def __init__(self, root: yaml.Node) -> None:
        self.root = root

    def node(self, path: DocPath) -> yaml.Node:
        node = self.root
        for i, step in enumerate(path):
            last = i == len(path) - 1
            if isinstance(node, yaml.MappingNode):
                name = step.name if isinstance(step, Key) else step
                pair = next((p for p in node.value if p[0].value == name), None)
                if pair is None:
                    break
                node = pair[0] if isinstance(step, Key) and last else pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
                if step >= len(node.value):
                    break
                node = node.value[step]
            else:
                break
        return node

    def line(self, path: DocPath) -> int:
        return int(self.node(path).start_mark.line) + 1

    def say(self, path: DocPath, message: str) -> Mistake:
        mark = self.node(path).start_mark
        return mark.line + 1, mark.column + 1, message

    def duplicates(self) -> list[Mistake]:
        """A key given twice in one mapping (YAML keeps the last, silently)."""
        out: list[Mistake] = []
        for node in _mappings(self.root):
            seen: set[object] = set()
            for k, _ in node.value:
                if k.value in seen:
                    m = k.start_mark
                    name = printable(str(k.value))
                    out.append((m.line + 1, m.column + 1, f"{name!r} given twice"))
                seen.add(k.value)
        return out


def _mappings(node: yaml.Node) -> Iterator[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        yield node
        for k, v in node.value:
            yield from _mappings(k)
            yield from _mappings(v)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            yield from _mappings(v)
