"""What distribution keeps in a repository's folder, entry by entry.

Anything else, at any depth (a referrers store a newer registry might add inside a
revision folder, a tool's file, damage), is not regplan's to judge: it is reported and
its repository fails closed. Temporary files that distribution v3.1's filesystem
driver writes before renaming them (``link.<uuid>.tmp``, ``data.<uuid>.tmp``,
distribution#4624) are known: one is left where the registry stopped mid-write. So
are the schema-1 signature links distribution 2.0 to 2.3 kept inside revision folders
(``signatures/<algorithm>/<hex>/link``): a registry upgraded since may still hold them.
"""

from __future__ import annotations

import enum
import re


class Entry(enum.Enum):
    KNOWN = "known"
    LEFTOVER = "leftover"
    """A temporary file of a write the registry did not finish: never the file it
    stands for."""
    UNKNOWN = "unknown"


_TEMPORARY = re.compile(r"\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.tmp$")


def stands_for(name: str) -> str | None:
    """The file a temporary file would have become (``link`` for ``link.<uuid>.tmp``),
    or None when ``name`` is not one."""
    m = _TEMPORARY.search(name)
    return name[: m.start()] if m is not None and m.start() > 0 else None


_SEGMENT = r"[^/]+"
_FOLDERS = re.compile(
    rf"""_manifests(?:
           /revisions(?:/{_SEGMENT}(?:/{_SEGMENT}                    # /<algorithm>/<hex>
             (?:/signatures(?:/{_SEGMENT}(?:/{_SEGMENT})?)?)?)?)?     # 2.0-2.3 signatures
         | /tags(?:/{_SEGMENT}(?:/current|/index(?:/{_SEGMENT}(?:/{_SEGMENT})?)?)?)?
       )?
     | _layers(?:/{_SEGMENT}(?:/{_SEGMENT})?)?
     | _uploads(?:/{_SEGMENT}(?:/hashstates(?:/{_SEGMENT})?)?)?""",
    re.VERBOSE,
)
_FILES = re.compile(
    rf"""_layers/{_SEGMENT}/{_SEGMENT}/link
     | _manifests/revisions/{_SEGMENT}/{_SEGMENT}/(?:signatures/{_SEGMENT}/{_SEGMENT}/)?link
     | _manifests/tags/{_SEGMENT}/(?:current|index/{_SEGMENT}/{_SEGMENT})/link
     | _uploads/{_SEGMENT}/(?:data|startedat|hashstates/{_SEGMENT}/{_SEGMENT})""",
    re.VERBOSE,
)


def entry(rest: str, *, directory: bool) -> Entry:
    """What ``rest`` (a path inside a repository's folder: ``_manifests/...``) is."""
    if directory:
        return Entry.KNOWN if _FOLDERS.fullmatch(rest) else Entry.UNKNOWN
    if _FILES.fullmatch(rest):  # nearly every file: one match
        return Entry.KNOWN
    folder, _, name = rest.rpartition("/")
    final = stands_for(name)
    if final is None:
        return Entry.UNKNOWN
    known = _FILES.fullmatch(f"{folder}/{final}" if folder else final)
    return Entry.LEFTOVER if known else Entry.UNKNOWN
