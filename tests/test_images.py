"""The plan's image records: what each tag's verdict and rule are, and their spooled form."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from regplan.decide import images
from regplan.plans import codec
from regplan.plans.plan import Image, Verdict
from tests.helpers import make_plan, selection

names = st.text(min_size=1, max_size=20)
records = st.builds(
    Image,
    repo=names,
    tag=st.none() | names,
    digest=st.none() | names,
    verdict=st.sampled_from(Verdict),
    reason=st.text(max_size=40),
    attached_to=st.none() | names,
    kind=names,
    bytes=st.integers(min_value=0, max_value=2**62),
)


@given(records, st.integers(min_value=0, max_value=10**9))
def test_a_spooled_record_is_written_as_the_image_itself(image: Image, seq: int) -> None:
    """The writing pass builds each item from its record without structuring it: the
    bytes must be the ones the image itself unstructures to."""
    record = images.as_record(image, seq)
    assert images.from_record(record) == image
    assert images.raw_of(record) == next(codec.unstructure_items([image]))


def test_every_tag_is_recorded_with_its_verdict(demo_root: Path) -> None:
    """Untagged manifests a rule looked at are recorded; those of untouched repositories
    are not (the plan says nothing of them)."""
    plan = make_plan(demo_root, selection(("team/app:v1",), ("team/tool",)))
    by_name = {i.name: i for i in plan.images}
    assert by_name["team/app:v1"].verdict is Verdict.REMOVED
    assert by_name["team/app:v2"].verdict is Verdict.KEPT
    assert by_name["old/repo:2019"].verdict is Verdict.UNTOUCHED
    untagged = {i.repo for i in plan.images if i.tag is None}
    assert untagged == {"team/tool"}  # its index children, kept; team/app's are not looked at
    assert plan.images == tuple(sorted(plan.images, key=lambda i: images.as_record(i, 0)[:4]))


def test_a_repository_removed_folder_by_folder_keeps_what_nests_in_it(demo_root: Path) -> None:
    """team/app goes as _manifests, _layers, _uploads because team/app/cache nests in its
    folder and stays: cache's image is untouched, not removed."""
    plan = make_plan(demo_root, selection(("team/app",)))
    by_name = {i.name: i for i in plan.images}
    assert by_name["team/app:v1"].verdict is Verdict.REMOVED
    assert by_name["team/app/cache:stable"].verdict is Verdict.UNTOUCHED
    whole = make_plan(demo_root, selection(("team/app/cache", "old/repo")))
    assert {i.name: i.verdict for i in whole.images}["team/app/cache:stable"] is Verdict.REMOVED
