"""When each file was written, by path, without holding the paths.

With ``--gc-min-age`` (or a policy's ages) a walk notes the time of every link file and
blob ``data``: a million of them at a million files. As a dict of paths that cost some
215 bytes each (the path's text, 100 characters and more, most of it); here each path
is a 128-bit keyed hash of it (BLAKE2b, a key drawn per process: no one can choose
paths that meet), some 110 bytes. Only ever asked by path, never listed: the paths
are in the tree.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, overload

_KEY = os.urandom(16)
"""Drawn once per process; a walk's forked shares inherit it (their keys are ours)."""


def _key(path: str) -> int:
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=16, key=_KEY)
    return int.from_bytes(digest.digest(), "little")


class ByPath(Protocol):
    """What the planner asks of a walk's times (a plain dict of paths answers it too)."""

    def __getitem__(self, path: str, /) -> float: ...

    @overload
    def get(self, path: str, /) -> float | None: ...

    @overload
    def get(self, path: str, default: float, /) -> float: ...


class Times:
    """path -> when (epoch seconds), written by a walk, read by path."""

    __slots__ = ("_at",)

    def __init__(self) -> None:
        self._at: dict[int, float] = {}

    def __setitem__(self, path: str, when: float) -> None:
        self._at[_key(path)] = when

    def __getitem__(self, path: str, /) -> float:
        try:
            return self._at[_key(path)]
        except KeyError:
            raise KeyError(path) from None

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and _key(path) in self._at

    def __len__(self) -> int:
        return len(self._at)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Times) and other._at == self._at

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dict

    @overload
    def get(self, path: str, /) -> float | None: ...

    @overload
    def get(self, path: str, default: float, /) -> float: ...

    def get(self, path: str, default: float | None = None, /) -> float | None:
        return self._at.get(_key(path), default)

    def pop(self, path: str, default: float, /) -> float:
        return self._at.pop(_key(path), default)

    def update(self, other: Times) -> None:
        self._at.update(other._at)

    def __getstate__(self) -> dict[int, float]:
        return self._at

    def __setstate__(self, state: dict[int, float]) -> None:
        self._at = state
