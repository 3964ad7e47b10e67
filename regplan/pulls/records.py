"""Pull records as a plan holds them (``Request.pulls``) and back: what an apply
decides again with."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from regplan.plans.plan import PulledImage, PullSpan, PullsRecord
from regplan.pulls.facts import Pulls, Seen, Span

_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(_FORMAT)


def unstamp(text: str) -> float:
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC).timestamp()


def record(pulls: Pulls, judged: Mapping[tuple[str, str], Seen]) -> PullsRecord:
    """What the plan records of ``pulls``: the records' digest and spans, and the pulls
    of every image tag a rule judged by them (``judged``)."""
    return PullsRecord(
        file=pulls.file,
        sha256=pulls.sha256,
        spans=tuple(
            PullSpan(source=s.source, since=stamp(s.since), until=stamp(s.until))
            for s in pulls.spans
        ),
        images=tuple(
            PulledImage(repo=repo, tag=tag, last=stamp(s.last), count=s.count)
            for (repo, tag), s in sorted(judged.items())
        ),
    )


def pulls_of(rec: PullsRecord) -> Pulls:
    """The pull facts a plan recorded, as its rules read them (each image's pulls as
    its tag's: ``facts.Looks`` finds the same)."""
    return Pulls(
        file=rec.file,
        sha256=rec.sha256,
        spans=tuple(Span(s.source, unstamp(s.since), unstamp(s.until)) for s in rec.spans),
        tags={(i.repo, i.tag): Seen(unstamp(i.last), i.count) for i in rec.images},
    )
