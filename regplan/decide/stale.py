"""What writes left behind and an age removes (pure): upload folders a client never
finished (``--uploads-older-than``, by their ``startedat``) and the temporary files a
registry write did not rename (``--leftovers-older-than``, by their own time).

Neither is referenced by anything, but either may belong to a write still under way
when the registry runs: only what is older than the age goes, and what cannot be
dated stays.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from regplan.decide.ages import parse_age, parse_time
from regplan.scan import entries
from regplan.scan.inventory import Inventory, Problem, ProblemCode
from regplan.scan.layout import upload_dir


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M")


def uploads(
    older_than: str | None, inv: Inventory, now: datetime, kept: dict[str, str]
) -> tuple[dict[tuple[str, str], str], list[Problem]]:
    """(repository, uuid) -> why it goes; what cannot be dated joins ``kept`` and the
    problems returned."""
    out: dict[tuple[str, str], str] = {}
    problems: list[Problem] = []
    if not older_than:
        return out, problems
    cutoff = now - parse_age(older_than)
    for name, repo in inv.repositories.items():
        for uuid, upload in repo.uploads.items():
            path = upload_dir(name, uuid)
            started = parse_time(upload.started_at) if upload.started_at else None
            if started is None:
                what = "no startedat" if upload.started_at is None else "unreadable startedat"
                kept[path] = f"{what}: cannot tell its age"
                problems.append(
                    Problem(
                        path=path,
                        code=ProblemCode.UNREADABLE,
                        message=f"upload {uuid}: {what}; kept",
                    )
                )
            elif started < cutoff:
                out[(name, uuid)] = f"--uploads-older-than {older_than}: started {_when(started)}"
    return out, problems


def leftovers(
    older_than: str | None, inv: Inventory, now: datetime, kept: dict[str, str]
) -> dict[str, str]:
    """path -> why a leftover temporary file goes; younger ones join ``kept``."""
    out: dict[str, str] = {}
    if not older_than:
        return out
    cutoff = (now - parse_age(older_than)).timestamp()
    for p in inv.problems:
        if p.code is not ProblemCode.LEFTOVER_TEMP:
            continue
        final = entries.stands_for(p.path.rpartition("/")[2])
        mtime = inv.mtimes.get(p.path)
        if mtime is None:
            kept[p.path] = "a leftover temporary file whose time the scan could not read"
            continue
        written = _when(datetime.fromtimestamp(mtime, now.tzinfo))
        if mtime >= cutoff:
            kept[p.path] = (
                f"--leftovers-older-than {older_than}: written {written}, a write may be under way"
            )
        else:
            out[p.path] = (
                f"--leftovers-older-than {older_than}: a {final} the registry never finished "
                f"writing, written {written}"
            )
    return out


class Pending:
    """The leftovers to remove that no folder target takes with it: each is a target
    of its own unless a target holding it (its repository, revision, blob) comes first."""

    def __init__(self, chosen: Mapping[str, str]) -> None:
        self.chosen = dict(chosen)
        self._holders: dict[str, list[str]] = {}
        for path in chosen:
            parts = path.split("/")
            for i in range(2, len(parts)):
                self._holders.setdefault("/".join(parts[:i]), []).append(path)

    def covered(self, target: str) -> None:
        """``target`` goes: the leftovers inside it go with it."""
        for path in self._holders.get(target, ()):
            self.chosen.pop(path, None)
