"""A walk's times by path (regplan/scan/times.py): asked by path as a dict is, kept as
keyed hashes of the paths."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regplan.scan.times import Times


def test_times_answer_by_path_as_a_dict_does() -> None:
    times, plain = Times(), {}
    for n in range(1000):
        path = f"repositories/team/app{n}/_layers/sha256/{n:064x}/link"
        times[path] = plain[path] = 1_700_000_000.0 + n
    assert len(times) == len(plain)
    for path, when in plain.items():
        assert path in times
        assert times[path] == times.get(path) == times.get(path, 0.0) == when
    assert times.get("blobs/elsewhere") is None
    assert times.get("blobs/elsewhere", float("inf")) == float("inf")
    assert "blobs/elsewhere" not in times
    with pytest.raises(KeyError, match="blobs/elsewhere"):
        times["blobs/elsewhere"]
    first = next(iter(plain))
    assert times.pop(first, 0.0) == plain[first]
    assert times.pop(first, 0.0) == 0.0


def test_times_travel_between_a_walks_shares() -> None:
    """A forked share's times come back pickled and join the others."""
    one, two = Times(), Times()
    one["a/link"] = 1.0
    two["b/link"] = 2.0
    back = pickle.loads(pickle.dumps(two))  # noqa: S301 (our own object)
    assert back == two
    one.update(back)
    assert (one["a/link"], one["b/link"], len(one)) == (1.0, 2.0, 2)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "pop", "get"]),
            st.integers(0, 40),
            st.floats(allow_nan=True, allow_infinity=False, width=64),
        ),
        max_size=300,
    )
)
def test_times_are_a_dict_of_paths_whatever_is_done(ops: list[tuple[str, int, float]]) -> None:
    """Any run of writes, pops and reads (writes waiting in the log between reads, a
    table that grows, popped keys left in their slots), joined into another before or
    after its last read, and pickled: the answers a dict of the same paths gives, save
    that a NaN is no time."""
    times, plain = Times(), dict[str, float]()
    paths = [f"blobs/sha256/{n:02x}/{n:064x}/data" for n in range(41)]
    for op, n, when in ops:
        path = paths[n]
        if op == "set":
            times[path] = when
            if math.isnan(when):
                plain.pop(path, None)
            else:
                plain[path] = when
        elif op == "pop":
            assert times.pop(path, -1.0) == plain.pop(path, -1.0)
        else:
            assert times.get(path) == plain.get(path)
            assert (path in times) == (path in plain)
    copied = Times()
    copied.update(times)  # into nothing yet: a copy of its arrays, log and all
    joined = Times()
    joined["blobs/elsewhere"] = 1.0
    joined.update(times)  # with what ``times`` has not yet put in its table
    assert joined.pop("blobs/elsewhere", 0.0) == 1.0
    for t in (copied, joined, times, pickle.loads(pickle.dumps(times))):  # noqa: S301 (ours)
        assert len(t) == len(plain)
        assert all(t.get(p) == plain.get(p) for p in paths)
    assert copied == joined == times
    for p in paths:
        copied.pop(p, 0.0)  # a copy's own: the original keeps its times
    assert len(times) == len(plain)
