"""The regular expressions of a request (``--match``, ``--keep``, ``--exclude-tags``) and
of a policy (``tags_regex``, ``exclude_tags_regex``, ``keep.regex``): compiled once, on
RE2, matched against whole names.

RE2 matches in time linear in the name, whatever the pattern: a tag anyone can push
never makes a plan run for ever, as a backtracking engine can (``(a+)+$`` on forty
``a`` and a ``!``). What RE2 cannot do in linear time it does not compile
(backreferences, lookaround): such a pattern is refused with one line that says so.
"""

from __future__ import annotations

import functools
from typing import Protocol

import re2  # type: ignore[import-untyped]  # google-re2 ships no types

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is our one-line error, not RE2's log line


class Compiled(Protocol):
    def fullmatch(self, text: str) -> object | None: ...


class PatternError(ValueError):
    """A pattern RE2 does not compile; the message says why, on one line."""


@functools.cache
def compiled(pattern: str) -> Compiled:
    """``pattern`` compiled; PatternError when RE2 refuses it."""
    try:
        made: Compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as e:
        why = e.args[0] if e.args else "refused"
        text = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
        raise PatternError(f"RE2 refuses it: {text}") from None
    return made


@functools.lru_cache(maxsize=1 << 16)
def whole(pattern: str, name: str) -> bool:
    """Whether ``pattern`` matches the whole of ``name``. Remembered: a call into RE2
    costs some 5 us where Python's re takes 0.1, and a registry's tag names repeat from
    repository to repository (``latest``, ``v1``)."""
    return compiled(pattern).fullmatch(name) is not None
