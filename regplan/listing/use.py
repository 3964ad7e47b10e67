"""``plan --listing``: the storage a plan scans through a listing file, what the plan
records of it, and the snapshot rule: a listing is hours to days old, so a --gc plan
from it spares everything younger than the listing (``--gc-min-age`` at least its age;
refused otherwise). What it cannot prove is read or kept, as a scan keeps it, and an
apply lists the store again and moves only what nothing that stays references.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from regplan.decide.ages import parse_age
from regplan.decide.selection import Selection
from regplan.errors import SelectionError, StorageError
from regplan.plans.plan import ListingRecord
from regplan.storage import location
from regplan.storage.listing.listed import Listing, listed
from regplan.storage.location import Location


def check_age(selection: Selection, listed_at: float, now: datetime, file: str) -> None:
    """A --gc plan from a listing taken ``now - listed_at`` ago must spare what is
    younger than that: SelectionError otherwise."""
    policy = selection.policy
    gc = selection.gc or (policy is not None and policy.registry.gc)
    if not gc:
        return
    given = selection.gc_min_age or (policy.registry.gc_min_age if policy is not None else None)
    age = max(0.0, now.timestamp() - listed_at)
    if given is not None and parse_age(given).total_seconds() >= age:
        return
    hours = max(1, math.ceil(age / 3600))
    raise SelectionError(
        f"--listing {file} was taken {_span(age)} ago: --gc from it needs --gc-min-age of at "
        f"least that (what was written since is not in it), e.g. --gc-min-age {hours}h"
    )


def _span(seconds: float) -> str:
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def open_listing(
    storage: Location, path: Path, *, selection: Selection, now: datetime, memory: str | None
) -> tuple[Listing, Location, ListingRecord]:
    """The listing at ``path`` loaded (close it), the storage to plan through, and the
    plan's record of the listing."""
    if not location.is_object_store(storage):
        raise StorageError(
            "--listing lists an object store (s3://, az://, gs://): a filesystem is walked"
        )
    listing = Listing(path, storage, memory=memory)
    try:
        source = listing.source
        check_age(selection, source.listed_at, now, source.file)
        record = ListingRecord(
            file=path.name,
            sha256=source.sha256,
            format=source.format,
            listed_at=source.listed_at_text,
        )
    except BaseException:
        listing.close()
        raise
    return listing, listed(storage, listing), record
