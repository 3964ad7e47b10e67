"""Giving freed memory back to the system between a command's big steps."""

from __future__ import annotations

import ctypes


def give_back() -> None:
    """Return freed heap to the system: glibc keeps what a step freed for reuse, and
    the next step's objects would come on top of it (not glibc: nothing to do)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
