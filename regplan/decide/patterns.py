"""The regular expressions of a request (``--match``, ``--keep``, ``--exclude-tags``) and
of a policy (``tags_regex``, ``keep.regex``): compiled once, matched against whole names."""

from __future__ import annotations

import functools
import re


class PatternError(ValueError):
    """A pattern that does not compile; the message says why, on one line."""


@functools.cache
def compiled(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled; PatternError when it is not a regular expression."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise PatternError(str(e)) from None


def whole(pattern: str, name: str) -> bool:
    """Whether ``pattern`` matches the whole of ``name``."""
    return compiled(pattern).fullmatch(name) is not None
