"""The one progress callback every long step takes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

Progress: TypeAlias = Callable[[int, int], None]
"""Called now and then with (done, total); ``total`` is 0 while the size of the work
is not known (a walk counts the paths it has seen so far)."""
