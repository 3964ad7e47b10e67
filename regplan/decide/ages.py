"""Ages and times as the user and the registry write them."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from regplan.errors import SelectionError
from regplan.scan.inventory import Tag
from regplan.scan.layout import Digest

_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w``."""
    m = _AGE.match(text.strip())
    if m is None:
        raise SelectionError(f"age {text!r}: expected a number and a unit (s, m, h, d, w), e.g. 7d")
    try:
        age = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    except OverflowError:
        age = MAX_AGE + MAX_AGE
    if age > MAX_AGE:
        raise SelectionError(f"age {text!r} is more than 1000 years")
    return age


MAX_AGE = timedelta(days=365_250)
"""Ages beyond this are a typo (and ``now - age`` would leave the calendar)."""


def parse_time(text: str) -> datetime | None:
    """RFC 3339 as distribution writes it (``startedat``, config ``created``); None if not."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text.strip())
    if m is None:
        return None
    fraction = (m.group(2) or "")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return datetime.fromisoformat(m.group(1) + fraction + zone)
    except ValueError:
        return None


def day(ts: float) -> str:
    """A time as a reason shows it (UTC, to the minute)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def tag_time(
    tag: Tag, created: Mapping[Digest, str], by: str, *, now: float
) -> tuple[float | None, str]:
    """(when, how a reason says it) of a tag: its push, or with ``by`` "created" its
    image's config ``created`` time. None when that cannot be read, or when it is later
    than ``now`` (the plan's time, to the second): a clock ahead, or a forged config, is no age, and
    what has none is kept."""
    if by == "created":
        text = created.get(tag.current) if tag.current is not None else None
        parsed = parse_time(text) if text else None
        if parsed is None:
            return None, "no created time"
        when, said = parsed.timestamp(), "created"
    else:
        when, said = tag.pushed_at, "pushed"
    if after(when, now):
        return None, f"{said} {day(when)}, after the plan's time {day(now)}"
    return when, f"{said} {day(when)}"


def after(when: float, now: float) -> bool:
    """Whether ``when`` is later than the plan's time ``now``, to the second: a plan
    records its time in whole seconds, and an apply decides again at that time, so a push
    in the plan's own second is not after it."""
    return math.floor(when) > math.floor(now)
