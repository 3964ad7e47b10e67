"""The inventory as DuckDB tables, and the mark and sweep's steps over them.

One :class:`Mark` per plan: an in-memory database under a memory limit that spills
to its own temporary folder (removed on close). The inventory's facts are loaded
once (``sql.STATIC``); before each step the planner's decisions so far are loaded
(``sql.DYNAMIC``), the step's statement runs, and its (small) answer comes back as
digests.
"""

from __future__ import annotations

import array
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb

from regplan.errors import SpoolError
from regplan.mark import sql
from regplan.mark.numbers import Numbering
from regplan.scan.inventory import Inventory
from regplan.scan.layout import Digest

READ_BUFFER = 1 << 18
"""Bytes the table loader reads at a time (DuckDB's default, 32 MiB, was its peak)."""
FLOOR = 64 << 20
"""The mark's memory limit at least: what its steps' joins need at a time (48 MiB was too
little for the 250k bench tree's)."""
CELL = 10
"""Bytes a digest takes in the tables, on average (its number, 4 bytes, and the row's
other numbers), measured: 4.3 MiB for the 250k bench tree's 436,501 (as BLOBs in every
table they were 26 MiB; numbered in SQL, beside a table of each digest, 9 MiB)."""
BATCH = 4096
"""Rows of a long answer read back at a time."""
_SIZE = re.compile(r"(\d+)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def machine_limit() -> int:
    """A quarter of the machine's memory (bytes), at least FLOOR."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = 4 << 30
    return max(FLOOR, total // 4)


def default_memory_limit(inv: Inventory | None = None) -> str:
    """Sized to the inventory: a floor for the steps' joins plus half of what its tables
    hold (past that they spill to the database's folder), at most machine_limit().
    Holding all of them beside the inventory raised the plan's peak past the release
    before the SQL mark (docs/scale.md). A step that runs out of memory under it runs
    again under machine_limit() (Mark._fetch)."""
    held = 0 if inv is None else CELL * cells(inv)
    return f"{min(machine_limit(), FLOOR + held // 2) >> 20}MiB"


def cells(inv: Inventory) -> int:
    """How many digests the static tables (sql.STATIC) hold."""
    n = len(inv.blobs) + sum(len(m.blobs) * 2 for m in inv.manifests.values())
    for repo in inv.repositories.values():
        n += len(repo.revisions) + len(repo.layers) + len(repo.tags)
    return n


def memory_limit(text: str) -> str:
    """``text`` (``512MiB``, ``2GB``) as DuckDB reads it; ValueError otherwise."""
    m = _SIZE.fullmatch(text.strip())
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"{text[:40]!r} is not a size such as 512MiB or 2GB")
    return f"{m.group(1)}{m.group(2)}"


class Mark:
    """The mark and sweep's database for one plan. Close it (or use ``with``)."""

    def __init__(self, inv: Inventory, *, limit: str | None = None) -> None:
        self._tmp = tempfile.mkdtemp(prefix="regplan-mark-")
        try:
            self._db = duckdb.connect(
                ":memory:",
                config={
                    "memory_limit": limit or default_memory_limit(inv),
                    "temp_directory": self._tmp,
                    "threads": 1,
                    "preserve_insertion_order": False,
                    "allocator_flush_threshold": "1MiB",  # give back what a step freed
                },
            )
        except duckdb.Error as e:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise SpoolError(f"cannot start the mark's database: {e}") from None
        self._may_grow = limit is None
        """An explicit limit is the user's; the default one may grow once (_fetch)."""
        self.numbers = Numbering(inv.blobs)
        self.ids = {name: i for i, name in enumerate(inv.repositories)}
        self.tags: list[tuple[str, str]] = []
        """A tag's number in ``tagcur`` -> (repository, tag)."""
        for table, columns in (*sql.STATIC.items(), *sql.DYNAMIC.items()):
            ddl = columns.replace("DIGEST", "INTEGER")
            self._db.execute(f"CREATE TEMP TABLE {table} ({ddl})")
        self._load(inv)
        self._db.execute(sql.STAYING)

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Mark:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- loading ------------------------------------------------------------

    def _load(self, inv: Inventory) -> None:
        self.fill(
            "rev", ((self.ids[n], d) for n, r in inv.repositories.items() for d in r.revisions)
        )
        self.fill("uses", ((d, b) for d, m in inv.manifests.items() for b in m.blobs))
        self.fill("tagcur", self._tagcur(inv))
        self.fill(
            "layer", ((self.ids[n], b) for n, r in inv.repositories.items() for b in r.layers)
        )
        # the blobs are numbered by their sorted place (mark.numbers): 0 to n - 1
        self._db.execute("INSERT INTO blob SELECT range FROM range(?)", [len(inv.blobs)])

    def _tagcur(self, inv: Inventory) -> Iterator[tuple[int, int, Digest]]:
        for name, repo in inv.repositories.items():
            for tag in repo.tags.values():
                if tag.current is not None:
                    self.tags.append((name, tag.name))
                    yield self.ids[name], len(self.tags) - 1, tag.current

    def fill(self, table: str, rows: Iterable[tuple[Any, ...]], *, fresh: bool = False) -> None:
        """Insert ``rows`` (digests, repositories as numbers) into ``table``, each digest
        as its number (mark.numbers), through a tab-separated file in the database's
        folder (a Python list of a million rows handed over as parameters took three
        times the memory)."""
        if fresh:
            self._db.execute(f"DELETE FROM {table}")  # noqa: S608 (a name of sql.DYNAMIC)
        spec = [c.split() for c in {**sql.STATIC, **sql.DYNAMIC}[table].split(", ")]
        digest = [kind == "DIGEST" for _, kind in spec]
        number = self.numbers.number
        path = Path(self._tmp) / f"{table}.tsv"
        n = 0
        try:
            with path.open("w", encoding="utf-8", newline="\n") as f:
                for row in rows:
                    cells = (number(v) if d else v for v, d in zip(row, digest, strict=True))
                    f.write("\t".join(map(str, cells)) + "\n")
                    n += 1
            if n:
                self._db.execute(
                    f"INSERT INTO {table} SELECT * FROM read_csv(?, delim='\t', "  # noqa: S608
                    f"header=false, columns={{{_columns(spec)}}}, buffer_size={READ_BUFFER}, "
                    f"max_line_size={READ_BUFFER})",
                    [str(path)],
                )
        except OSError as e:
            raise SpoolError(
                f"cannot keep the mark's tables in {self._tmp}: {e.strerror}"
            ) from None
        except duckdb.Error as e:
            raise SpoolError(f"the mark's database cannot hold {table}: {e}") from None
        finally:
            path.unlink(missing_ok=True)

    def decided(
        self,
        *,
        removed: Iterable[tuple[str, Digest]],
        layers_gone: Iterable[tuple[str, Digest]],
        whole: Iterable[str],
        failed: Iterable[str],
        touched: Iterable[str],
    ) -> None:
        """The planner's decisions so far (each replaces the last)."""
        self.fill("removed", ((self.ids[n], d) for n, d in removed), fresh=True)
        self.fill("layer_gone", ((self.ids[n], b) for n, b in layers_gone), fresh=True)
        for table, names in (("whole", whole), ("failed", failed), ("touched", touched)):
            self.fill(table, ((self.ids[n],) for n in names), fresh=True)

    # -- the steps ----------------------------------------------------------

    def _fetch(self, query: str, n: int | None) -> tuple[Any, list[tuple[Any, ...]]]:
        """Run ``query``: its result and its first ``n`` rows (all with None). Under the
        default limit, a step that runs out of memory runs again under machine_limit()
        (the sized limit is an estimate: at 1M files, 80 MiB was too little)."""

        def run() -> tuple[Any, list[tuple[Any, ...]]]:
            result = self._db.execute(query)
            return result, result.fetchall() if n is None else result.fetchmany(n)

        try:
            try:
                return run()
            except duckdb.OutOfMemoryException:
                if not self._may_grow:
                    raise
                self._may_grow = False
                self._db.execute(f"SET memory_limit = '{machine_limit() >> 20}MiB'")
                return run()
        except duckdb.Error as e:
            raise SpoolError(f"the mark and sweep failed: {e}") from None

    def _rows(self, query: str) -> list[tuple[Any, ...]]:
        return self._fetch(query, None)[1]

    def needed_links(
        self, asked: Iterable[tuple[str, Digest]]
    ) -> dict[tuple[str, Digest], list[Digest]]:
        """Of the layer links ``asked`` (repository, blob), those a staying revision of
        their repository uses -> those revisions (sorted)."""
        self.fill("lcand", ((self.ids[n], b) for n, b in asked), fresh=True)
        names, digest = list(self.ids), self.numbers.digest
        out: dict[tuple[str, Digest], list[Digest]] = {}
        for repo, b, d in self._rows(sql.NEEDED_LINKS):
            out.setdefault((names[repo], digest(b)), []).append(digest(d))
        for revisions in out.values():
            revisions.sort()
        return out

    def free_links(self) -> list[tuple[str, Digest]]:
        """--gc: (repository, blob) of every layer link nothing staying there uses."""
        names, digest = list(self.ids), self.numbers.digest
        return sorted((names[repo], digest(b)) for repo, b in self._rows(sql.FREE_LINKS))

    def held_named(self, named: Iterable[Digest]) -> Mapping[Digest, list[tuple[str, int, Any]]]:
        """Of the blobs the request freed, those something that stays references ->
        what: (repository, how, via revision or tag name) as sql.NAMED_HOLDERS says."""
        self.fill("named", ((b,) for b in named), fresh=True)
        names, digest = list(self.ids), self.numbers.digest
        out: dict[Digest, list[tuple[str, int, Any]]] = {}
        for b, repo, how, via, tag in self._rows(sql.NAMED_HOLDERS):
            what: Any = digest(via) if how == 0 else self.tags[tag][1] if how == 1 else None
            out.setdefault(digest(b), []).append((names[repo], how, what))
        return out

    def unheld(self) -> Iterator[Digest]:
        """--gc: every blob nothing that stays references, but those the request freed
        (in no order). The answer is read whole, as numbers (4 bytes a blob: there may
        be millions), before this returns: the database may close before they are
        taken (the planner's targets then grow without its memory beside them)."""
        result, batch = self._fetch(sql.UNHELD, BATCH)
        numbers = array.array("I")
        try:
            while batch:
                numbers.extend(b for (b,) in batch)
                batch = result.fetchmany(BATCH)
        except duckdb.Error as e:
            raise SpoolError(f"the mark and sweep failed: {e}") from None
        return map(self.numbers.digest, numbers)


def _columns(spec: list[list[str]]) -> str:
    """read_csv's ``columns`` for a table's (name, kind) pairs: every one a number."""
    return ", ".join(f"'{name}': 'INTEGER'" for name, _ in spec)
