from __future__ import annotations

import io

import pytest

from regplan.cli.progress import Reporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_shows_after_a_second_throttled_and_clears() -> None:
    clock, out = Clock(), Tty()
    r = Reporter("scanning paths", stream=out, clock=clock)
    r.count(10)
    assert out.getvalue() == ""  # quick work shows nothing
    clock.now += 2
    r.count(5000)
    assert out.getvalue() == "\rscanning paths: 5,000 (2,500/s)\x1b[K"
    r.count(6000)  # within 0.2 s of the last line: throttled
    assert out.getvalue().count("\r") == 1
    clock.now += 1
    r.fraction(30, 40)
    assert out.getvalue().endswith("\rscanning paths: 30/40 (10/s)\x1b[K")
    r.done()
    assert out.getvalue().endswith("\r\x1b[K")


def test_silent_when_not_a_terminal_or_disabled() -> None:
    clock = Clock()
    for r, out in (
        (Reporter("x", stream=(s := io.StringIO()), clock=clock), s),
        (Reporter("x", stream=(t := Tty()), clock=clock, enabled=False), t),
    ):
        clock.now += 5
        r.count(1)
        r.done()
        assert out.getvalue() == ""


def test_a_count_that_starts_over_is_a_new_walk() -> None:
    """apply walks twice with one reporter: the second walk's rate is its own."""
    clock, out = Clock(), Tty()
    r = Reporter("checking paths", stream=out, clock=clock)
    r.count(0)
    clock.now += 2
    r.count(8000)
    assert out.getvalue().endswith("checking paths: 8,000 (4,000/s)\x1b[K")
    clock.now += 30  # the moves
    r.count(5)
    assert out.getvalue().count("\r") == 1  # a new walk: silent for its first second
    clock.now += 2
    r.count(6000)
    assert out.getvalue().endswith("checking paths: 6,000 (3,000/s)\x1b[K")


def test_the_line_is_cleared_however_the_work_ends() -> None:
    """An error message printed next must start on a clean line."""
    clock, out = Clock(), Tty()
    with pytest.raises(ValueError, match="stale"), Reporter("x", stream=out, clock=clock) as r:
        r.count(0)
        clock.now += 2
        r.count(5000)
        raise ValueError("stale")
    assert out.getvalue() == "\rx: 5,000 (2,500/s)\x1b[K\r\x1b[K"
    r.done()  # already cleared: nothing more
    assert out.getvalue().count("\x1b[K") == 2


def test_the_work_starts_at_its_first_report_not_at_creation() -> None:
    """The reporters are made before the plan is read; that time is not the walk's."""
    clock, out = Clock(), Tty()
    r = Reporter("checking paths", stream=out, clock=clock)
    clock.now += 30  # reading and checking a large plan
    r.count(2)
    assert out.getvalue() == ""  # the walk's first second: silent
    clock.now += 2
    r.count(150_000)
    assert out.getvalue() == "\rchecking paths: 150,000 (75,000/s)\x1b[K"
