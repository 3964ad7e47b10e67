"""The one place plans become bytes and bytes become plans."""

from __future__ import annotations

import json
from typing import Any

import cattrs
from cattrs.preconf.json import make_converter as _json_converter
from cattrs.v import format_exception

from regplan.errors import PlanFormatError
from regplan.plan import FORMAT, VERSION, Plan


def make_converter() -> cattrs.Converter:
    return _json_converter(forbid_extra_keys=True)


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


def dumps(plan: Plan) -> bytes:
    """The plan file: indent 2, field order of the model, trailing newline."""
    return (json.dumps(unstructure(plan), indent=2, ensure_ascii=False) + "\n").encode()


def parse_json(data: bytes, *, source: str) -> dict[str, Any]:
    """Read the raw plan object and check its format and version."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PlanFormatError(f"{source}: not JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise PlanFormatError(f'{source}: not a regplan plan (no "format": "{FORMAT}")')
    version = raw.get("version")
    if version != VERSION:
        raise PlanFormatError(
            f"{source}: plan format version {version!r} is not supported "
            f"(this regplan reads version {VERSION})"
        )
    return raw


def _describe(exc: BaseException, type_: type | None) -> str:
    """Keep a validator's own message (e.g. why a target path is refused)."""
    if type(exc) is ValueError and str(exc):
        return str(exc)
    return format_exception(exc, type_)


def structure(raw: dict[str, Any], *, source: str) -> Plan:
    try:
        return _converter.structure(raw, Plan)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as e:
        detail = (
            "; ".join(cattrs.transform_error(e, format_exception=_describe))
            if isinstance(e, cattrs.BaseValidationError)
            else str(e)
        )
        raise PlanFormatError(f"{source}: invalid plan: {detail}") from None


def unstructure_request(request: object) -> object:
    return _converter.unstructure(request)
