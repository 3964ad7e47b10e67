"""A walk's times by path (regplan/scan/times.py): asked by path as a dict is, kept as
keyed hashes of the paths."""

from __future__ import annotations

import pickle

import pytest

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
