"""Progress on stderr for long work: only on a terminal, only after a second, throttled."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Reporter:
    def __init__(
        self,
        label: str,
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.label = label
        self.clock = clock
        self.start: float | None = None
        """When the work began: its first report (not this object's creation, which
        comes before the plan is even read)."""
        self._last = 0.0
        self._shown = False
        self._counted = 0

    def update(self, done: int, total: int) -> None:
        """The one progress callback (regplan.progress): a count while ``total`` is 0."""
        if total:
            self.fraction(done, total)
        else:
            self.count(done)

    def count(self, n: int) -> None:
        """For work of unknown size: paths scanned so far. A smaller count than the
        last one starts a new run of the work (apply's second walk): its rate, and
        its second of silence, start over."""
        if n < self._counted:
            self.start = None
        self._counted = n
        self._show(lambda rate: f"{self.label}: {n:,} ({rate(n)}/s)")

    def fraction(self, done: int, total: int) -> None:
        self._show(lambda rate: f"{self.label}: {done:,}/{total:,} ({rate(done)}/s)")

    def _show(self, text: Callable[[Callable[[int], str]], str]) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if self.start is None:
            self.start = now
        if now - self.start < 1.0 or now - self._last < 0.2:
            return
        self._last = now
        elapsed = now - self.start

        def rate(n: int) -> str:
            return f"{n / elapsed:,.0f}"

        self.stream.write(f"\r{text(rate)}\x1b[K")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        """However the work ends: an error message must not follow a progress line."""
        self.done()
