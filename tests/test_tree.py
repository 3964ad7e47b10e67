"""The compact Tree: lookups and predicted digests equal those of a plain dict."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regplan.errors import SpoolError
from regplan.scan import tree as tree_module
from regplan.scan.layout import part_of
from regplan.scan.tree import Tree
from tests.helpers import reference_digest

ENTRIES = {
    "blobs": "d",
    "blobs/sha256": "d",
    "blobs/sha256/ab": "d",
    "blobs/sha256/ab/abcd": "d",
    "blobs/sha256/ab/abcd/data": "f100",
    "blobs/sha256/ab/abce": "d",
    "blobs/sha256/ab/abce/data": "f7",
    "repositories": "d",
    "repositories/a": "d",
    "repositories/a/_layers": "d",
    "repositories/a/_layers/sha256": "d",
    "repositories/a/_layers/sha256/abcd": "d",
    "repositories/a/_layers/sha256/abcd/link": "lsha256:abcd",
    "repositories/a/b": "d",
    "repositories/a/b/_manifests": "d",
    "repositories/a/b/_manifests/odd\nname": "d",
    "repositories/a/b/_manifests/link": "lsha256:\0\n",
    "repositories/a-b": "d",
    "repositories/a-b/_uploads": "d",
    "repositories/a-b/_uploads/u": "d",
    "repositories/a-b/_uploads/u/startedat": "f20",
    "repositories/z": "s/etc",
}


def test_lookups_equal_the_dict() -> None:
    tree = Tree.from_entries(ENTRIES)
    assert len(tree) == len(ENTRIES)
    assert dict(tree.items()) == ENTRIES
    assert tree.digest == reference_digest(ENTRIES)
    for path, token in ENTRIES.items():
        assert tree.token(path) == token
        assert path in tree
    assert "repositories/a/_layers/sha256/abc" not in tree
    assert tree.token("repositories/nope") is None


def test_subtree_and_bytes_cross_nested_repositories() -> None:
    tree = Tree.from_entries(ENTRIES)
    under_a = sorted(p for p in ENTRIES if p == "repositories/a" or p.startswith("repositories/a/"))
    assert sorted(tree.subtree("repositories/a")) == under_a  # not repositories/a-b
    assert tree.bytes_under("repositories/a") == len("sha256:abcd") + len("sha256:\0\n")
    assert tree.bytes_under("blobs/sha256/ab") == 107
    assert tree.bytes_under("blobs/sha256/ab/abce") == 7
    assert tree.bytes_under("repositories/a-b") == 20
    assert list(tree.subtree("repositories/missing")) == []


def test_without_equals_the_digest_of_what_is_left() -> None:
    tree = Tree.from_entries(ENTRIES)
    # overlapping targets, a target spanning a nested repository, a part emptied
    removed = ["repositories/a", "repositories/a/_layers", "blobs/sha256/ab/abcd", "repositories/z"]
    left = {
        p: t
        for p, t in ENTRIES.items()
        if not any(p == r or p.startswith(r + "/") for r in removed)
    }
    assert tree.without(sorted(removed, key=part_of)) == reference_digest(left)
    assert tree.without([]) == tree.digest
    with pytest.raises(ValueError, match="out of part order"):
        tree.without(sorted(removed, key=part_of, reverse=True))


NAMES = ["blobs", "repositories", "a", "a-b", "_layers", "_manifests", "x", "link", "b"]
paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=5).map("/".join)
tokens = st.one_of(
    st.just("d"), st.integers(0, 99).map(lambda n: f"f{n}"), st.text().map("l{}".format)
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(paths, tokens, max_size=40), st.lists(paths, max_size=6))
def test_any_tree_any_removal(entries: dict[str, str], removed: list[str]) -> None:
    tree = Tree.from_entries(entries)
    assert dict(tree.items()) == entries
    assert tree.digest == reference_digest(entries)
    assert all(tree.token(p) == t for p, t in entries.items())
    left = {
        p: t
        for p, t in entries.items()
        if not any(p == r or p.startswith(r + "/") for r in removed)
    }
    assert tree.without(sorted(removed, key=part_of)) == reference_digest(left)
    for r in removed:
        assert tree.bytes_under(r) == sum(
            int(t[1:]) if t[0] == "f" else len(t) - 1 if t[0] == "l" else 0
            for p, t in entries.items()
            if p == r or p.startswith(r + "/")
        )


def test_a_tree_kept_in_its_temporary_file_reads_as_one_held(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    held = Tree.from_entries(ENTRIES)
    monkeypatch.setattr(tree_module, "STORE_MIN", 0)
    stored = Tree.from_entries(ENTRIES)
    assert stored._file is not None and held._file is None  # it did go to the file
    assert list(stored.items()) == list(held.items())
    assert dict(stored.items()) == ENTRIES
    removed = sorted(["repositories/a", "blobs/sha256/ab/abcd"], key=part_of)
    assert stored.without(removed) == held.without(removed)
    assert [stored.bytes_under(p) for p in ENTRIES] == [held.bytes_under(p) for p in ENTRIES]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-folder"))
    with pytest.raises(SpoolError, match=r"cannot keep the tree's index in .*no-such-folder"):
        Tree.from_entries(ENTRIES)
