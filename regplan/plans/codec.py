"""The one place plans become bytes and bytes become plans."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter as _json_converter
from cattrs.v import format_exception

from regplan.errors import PlanFormatError
from regplan.plans.plan import (
    FORMAT,
    VERSION,
    Image,
    Plan,
    Request,
    SelectionRecord,
    StorageRecord,
    Target,
)


def make_converter() -> cattrs.Converter:
    c = _json_converter(forbid_extra_keys=True)
    # Request's and StorageRecord's before Plan's: its function takes theirs as they are now
    omit = override(omit_if_default=True)
    c.register_unstructure_hook(  # before Request's: it takes this one as it is now
        SelectionRecord, make_dict_unstructure_fn(SelectionRecord, c, pulled_within=omit)
    )
    c.register_unstructure_hook(
        Request, make_dict_unstructure_fn(Request, c, policy=omit, pulls=omit, listing=omit)
    )
    c.register_unstructure_hook(StorageRecord, StorageRecord.flat)
    c.register_unstructure_hook(
        Target, make_dict_unstructure_fn(Target, c, digest=override(omit_if_default=True))
    )
    image_fn = make_dict_unstructure_fn(
        Image,
        c,
        pushed=omit,
        created=omit,
        rule=omit,
        rank=omit,
        last_pulled=omit,
        pulls=omit,
    )
    c.register_unstructure_hook(Image, image_fn)
    c.register_structure_hook(StorageRecord, _storage_record)
    plan_fn = make_dict_unstructure_fn(Plan, c, storage=override(omit_if_default=True))
    order = [f.name for f in attrs.fields(Plan)]

    def plan_hook(plan: Plan) -> dict[str, Any]:
        """``storage`` only when set (object storage), in its place after ``root``."""
        raw = plan_fn(plan)
        return {name: raw[name] for name in order if name in raw}

    c.register_unstructure_hook(Plan, plan_hook)
    return c


def _storage_record(raw: object, _: object) -> StorageRecord:
    """A plan's ``storage``: a driver's name and its string fields (a field an older
    version wrote as null is left out); which fields a driver takes is its cloud's."""
    if not isinstance(raw, dict) or not isinstance(raw.get("driver"), str):
        raise ValueError("storage is not an object with a driver")  # noqa: TRY004 (one error type)
    params = {k: v for k, v in raw.items() if v is not None}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
        raise ValueError("storage holds a field that is not a string")
    return StorageRecord.of(params)


_converter = make_converter()


def unstructure(plan: Plan) -> dict[str, Any]:
    raw: dict[str, Any] = _converter.unstructure(plan)
    return raw


def body(raw: dict[str, Any]) -> dict[str, Any]:
    """Everything a signature covers: every field but ``signatures``."""
    return {k: v for k, v in raw.items() if k != "signatures"}


def canonical(obj: Any) -> bytes:
    """One encoding per value: sorted keys, no spaces, UTF-8; the plan has no floats."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


_encode_str: Callable[[str], str] = json.encoder.encode_basestring
"""A JSON string as json.dumps(ensure_ascii=False) writes it (the C encoder)."""

LISTS = ("targets", "kept", "problems", "images")
"""The fields that grow with the tree: written and hashed item by item, never whole."""


def _lists(plan: Plan) -> tuple[dict[str, Any], dict[str, Iterable[Any]]]:
    """The plan without its long lists, and those lists unstructured lazily."""
    short = unstructure(attrs.evolve(plan, targets=(), kept=(), problems=(), images=()))
    return short, {name: map(_converter.unstructure, getattr(plan, name)) for name in LISTS}


def _pretty(value: Any, indent: str) -> str:
    """``json.dumps(value, indent=2)`` nested at ``indent``."""
    if isinstance(value, dict):
        flat = _pretty_flat(value, indent)
        if flat is not None:
            return flat
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)


def _scalar(value: Any) -> str | None:
    if isinstance(value, str):
        return _encode_str(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return int.__repr__(value)
    return None


def _pretty_flat(item: dict[str, Any], indent: str) -> str | None:
    """The same text for a dict of scalars and lists of scalars (a target, a kept
    entry, a problem), without the pure-Python indenting encoder; None otherwise."""
    inner = indent + "  "
    fields = []
    for key, value in item.items():
        if isinstance(value, list):
            texts = [t for t in map(_scalar, value) if t is not None]
            if len(texts) != len(value):
                return None
            text = (
                (f"[\n{inner}  " + f",\n{inner}  ".join(texts) + f"\n{inner}]") if texts else "[]"
            )
        else:
            scalar = _scalar(value)
            if scalar is None:
                return None
            text = scalar
        fields.append(f"{inner}{_encode_str(key)}: {text}")
    return ("{\n" + ",\n".join(fields) + f"\n{indent}}}") if fields else "{}"


def pretty_chunks(plan: Plan) -> Iterator[str]:
    """The plan file, piece by piece: the same text as ``json.dumps(unstructure(plan),
    indent=2)`` plus a newline, but no piece bigger than one list item."""
    short, lists = _lists(plan)
    return _pretty_chunks(short, lists, {name for name in LISTS if getattr(plan, name)})


def stream_pretty_chunks(header: Plan, lists: Mapping[str, Iterable[Any]]) -> Iterator[str]:
    """``pretty_chunks`` of ``header`` (a plan without its lists) with the long lists
    taken from ``lists`` (structured items, e.g. read from a plan file one at a time)."""
    return raw_pretty_chunks(
        header, {name: map(_converter.unstructure, items) for name, items in lists.items()}
    )


def raw_pretty_chunks(header: Plan, lists: Mapping[str, Iterable[Any]]) -> Iterator[str]:
    """``stream_pretty_chunks`` with the items of ``lists`` already unstructured."""
    short = unstructure(header)
    peeked: dict[str, Iterable[Any]] = {}
    for name, items in lists.items():
        it = iter(items)
        first = next(it, _NONE)
        if first is not _NONE:
            peeked[name] = itertools.chain([first], it)
    return _pretty_chunks(short, peeked, set(peeked))


_NONE = object()


def _pretty_chunks(
    short: dict[str, Any], lists: Mapping[str, Iterable[Any]], filled: set[str]
) -> Iterator[str]:
    yield "{"
    for i, (name, value) in enumerate(short.items()):
        yield f"{',' if i else ''}\n  {json.dumps(name)}: "
        if name in filled:
            yield "["
            for j, item in enumerate(lists[name]):
                yield f"{',' if j else ''}\n    {_pretty(item, '    ')}"
            yield "\n  ]"
        else:
            yield _pretty(value, "  ")
    yield "\n}\n"


def dumps(plan: Plan) -> bytes:
    """The plan file: indent 2, field order of the model, trailing newline."""
    return "".join(pretty_chunks(plan)).encode()


BATCH = 1024
"""List items encoded per call: one C-encoder call for many items, but never all."""


def canonical_chunks(obj: Mapping[str, Any], lists: Mapping[str, Iterable[Any]]) -> Iterator[bytes]:
    """``canonical(obj)`` piece by piece; the values of ``lists`` come BATCH items at a time."""
    yield b"{"
    for i, name in enumerate(sorted(obj)):
        yield (b"," if i else b"") + canonical(name) + b":"
        if name in lists:
            yield b"["
            items = iter(lists[name])
            sep = b""
            while batch := list(itertools.islice(items, BATCH)):
                yield sep + canonical(batch)[1:-1]  # the items without the list's brackets
                sep = b","
            yield b"]"
        else:
            yield canonical(obj[name])
    yield b"}"


def hex_sha256(chunks: Iterable[bytes]) -> bytes:
    """The hex SHA-256 of the chunks joined (a body digest: what a signature signs)."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest().encode()


def body_chunks(plan: Plan) -> Iterator[bytes]:
    """``canonical(body(unstructure(plan)))`` piece by piece."""
    short, lists = _lists(plan)
    return canonical_chunks(body(short), lists)


def stream_body_chunks(header: Plan, lists: Mapping[str, Iterable[Any]]) -> Iterator[bytes]:
    """``body_chunks`` of ``header`` with the long lists taken, already unstructured,
    from ``lists`` (one entry for each of LISTS)."""
    return canonical_chunks(body(unstructure(header)), lists)


def raw_body_chunks(raw: dict[str, Any]) -> Iterator[bytes]:
    """``canonical(body(raw))`` piece by piece, for a plan as read from its file."""
    lists = {name: raw[name] for name in LISTS if isinstance(raw.get(name), list)}
    return canonical_chunks(body(raw), lists)


def check_format(raw: Mapping[str, Any], *, source: str) -> None:
    """The plan's ``format`` and ``version`` are the ones this regplan reads."""
    if raw.get("format") != FORMAT:
        raise PlanFormatError(f'{source}: not a regplan plan (no "format": "{FORMAT}")')
    version = raw.get("version")
    if version != VERSION:
        raise PlanFormatError(
            f"{source}: plan format version {version!r} is not supported "
            f"(this regplan reads version {VERSION})"
        )


def _describe(exc: BaseException, type_: type | None) -> str:
    """Keep a validator's own message (e.g. why a target path is refused)."""
    if type(exc) is ValueError and str(exc):
        return str(exc)
    return format_exception(exc, type_)


def describe(e: Exception, path: str = "$") -> str:
    """A structuring error in one line, naming where (``path``: of the value structured)."""
    if isinstance(e, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(e, path=path, format_exception=_describe))
    return str(e)


_ERRORS = (cattrs.BaseValidationError, ValueError, TypeError, KeyError)


def structure(raw: dict[str, Any], *, source: str) -> Plan:
    try:
        return _converter.structure(raw, Plan)
    except _ERRORS as e:
        raise PlanFormatError(f"{source}: invalid plan: {describe(e)}") from None


T = TypeVar("T")


def structure_item(item: Any, type_: type[T], *, source: str, where: str) -> T:
    """One item of a plan's list (a target, a kept entry, a problem); ``where`` names it
    as ``structure`` of the whole plan would (``targets[4]``)."""
    try:
        return _converter.structure(item, type_)
    except _ERRORS as e:
        path = f"$.{where}"
        detail = describe(e, path) if isinstance(e, cattrs.BaseValidationError) else f"{e} @ {path}"
        raise PlanFormatError(f"{source}: invalid plan: {detail}") from None


def unstructure_request(request: object) -> object:
    return _converter.unstructure(request)


def unstructure_items(items: Iterable[Any]) -> Iterator[Any]:
    """List items (targets, kept entries, problems) as the plan file holds them."""
    return map(_converter.unstructure, items)
