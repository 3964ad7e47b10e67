"""Stores that wrap a store (seam.Store), as restic's backends wrap a backend: a test that
needs something to happen at a step of the transaction passes one of these instead
of patching a backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from regplan.storage.seam import Store

Hook = Callable[[], None]


class Around:
    """Every call goes to ``inner``; ``before[name]`` runs before each call of ``name``
    (with ``once``, before the first only)."""

    def __init__(self, inner: Store, *, once: bool = False, **before: Hook) -> None:
        self.inner = inner
        self.before = dict(before)
        self.once = once

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.inner, name)
        hook = self.before.get(name)
        if hook is None or not callable(real):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.once:
                self.before.pop(name, None)
            hook()
            return real(*args, **kwargs)

        return call


def around(inner: Store, *, once: bool = False, **before: Hook) -> Store:
    """``inner`` seen through Around, typed as the store it wraps."""
    wrapped: Store = Around(inner, once=once, **before)
    return wrapped
