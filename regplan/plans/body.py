"""A plan's long lists in a Parquet file beside it, pinned by SHA-256 in its header.

A plan of 10^8 targets is tens of gigabytes of indented JSON. With ``plan --body
parquet`` (or ``auto`` past ``AUTO_TARGETS``) the JSON file keeps only the header,
with a ``body`` field instead of the lists of ``codec.LISTS``::

    "body": {"format": "parquet", "file": "NAME.body.parquet",
             "sha256": "<hex of the Parquet file>", "counts": {"targets": N, ...}}

The Parquet has one row per item: ``list`` (which of ``codec.LISTS``), ``idx`` (its
place in that list, from 0) and ``item`` (the item's JSON, as the JSON plan would hold
it), lists in the order of ``codec.LISTS``, items in order. Signatures cover the header
with its ``body`` (``codec.canonical`` of it, as for every plan): the Parquet's bytes
are signed through its SHA-256, which a reader checks before it uses any item.

The file is read with DuckDB, ``BATCH`` rows at a time (``ROW_GROUP`` decoded at
once), through ``/dev/fd``: the bytes hashed are the bytes read (with ``snapshot``, a
private copy of them).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import duckdb

from regplan.errors import PlanFormatError, PlanWriteError
from regplan.plans import codec

FORMAT = "parquet"
AUTO_TARGETS = 1_000_000
"""``plan --body auto``: a Parquet body past this many targets, JSON up to it."""
BATCH = 1024
"""Rows fetched from DuckDB at a time."""
ROW_GROUP = 8192
"""Rows per Parquet row group: what DuckDB decodes at once, so what a reader holds
(at 65,536 a reader of a million targets peaked 100 MiB higher; the file is no larger)."""
CHOICES = ("auto", "json", "parquet")
_COLUMNS = [("list", "VARCHAR"), ("idx", "BIGINT"), ("item", "VARCHAR")]
_HEX = re.compile(r"[0-9a-f]{64}")
_Config = dict[str, str | bool | int | float | list[str]]
_WRITING: _Config = {"threads": 1, "memory_limit": "256MB"}
_READING: _Config = {"threads": 1, "memory_limit": "128MB", "enable_external_file_cache": False}


def chosen(choice: str, targets: int) -> bool:
    """Whether ``plan --body CHOICE`` writes a Parquet body for ``targets`` targets."""
    return choice == FORMAT or (choice == "auto" and targets > AUTO_TARGETS)


def name_for(plan: Path) -> str:
    """The body's file name beside ``plan``: ``x.plan.json`` -> ``x.plan.body.parquet``."""
    stem = plan.name.removesuffix(".json")
    return f"{stem}.body.parquet"


def write(path: Path, lists: Mapping[str, Iterable[Any]]) -> dict[str, Any]:
    """Write the items of ``lists`` (unstructured, in ``codec.LISTS`` order) to the
    Parquet file ``path`` (atomically) and return the pin for the header."""
    counts = dict.fromkeys(codec.LISTS, 0)
    partial = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory(prefix="regplan-body-") as tmp:
            rows = Path(tmp) / "rows.csv"
            with rows.open("w", encoding="utf-8", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow([name for name, _ in _COLUMNS])
                for name in codec.LISTS:
                    for i, item in enumerate(lists.get(name, ())):
                        w.writerow((name, i, json.dumps(item, ensure_ascii=False)))
                        counts[name] = i + 1
            _to_parquet(rows, partial, Path(tmp))
        sha256 = _hash_path(partial)
        partial.replace(path)
    except OSError as e:
        raise PlanWriteError(f"cannot write plan body {e.filename or path}: {e.strerror}") from None
    except duckdb.Error as e:
        raise PlanWriteError(f"cannot write plan body {path}: {_first(e)}") from None
    finally:
        partial.unlink(missing_ok=True)
    return {"format": FORMAT, "file": path.name, "sha256": sha256, "counts": counts}


def pinned(raw: Mapping[str, Any], pin: Mapping[str, Any]) -> dict[str, Any]:
    """A plan's header as its JSON file holds it with a body: ``raw`` (a plan
    unstructured) without its lists, and ``body`` before its signatures."""
    out = {k: v for k, v in raw.items() if k not in codec.LISTS and k != "signatures"}
    return {**out, "body": dict(pin), "signatures": raw.get("signatures", [])}


def _to_parquet(rows: Path, out: Path, tmp: Path) -> None:
    db = duckdb.connect(":memory:", config={**_WRITING, "temp_directory": str(tmp / "spill")})
    columns = ", ".join(f"'{n}': 'VARCHAR'" for n, _ in _COLUMNS)
    try:
        db.execute(
            "COPY (SELECT list, CAST(idx AS BIGINT) AS idx, item FROM read_csv(?, header=true, "  # noqa: S608 (our own column names)
            f"auto_detect=false, columns={{{columns}}}, quote='\"', escape='\"', "
            "max_line_size=8388608, buffer_size=16777216)) "
            f"TO ? (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP})",
            [str(rows), str(out)],
        )
    finally:
        db.close()


def _hash_path(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(1 << 20):
            h.update(data)
    return h.hexdigest()


def pin_of(raw: Mapping[str, Any], source: str, *, lists: bool) -> dict[str, Any] | None:
    """The header's ``body`` field checked (None: the lists are in the JSON); ``lists``:
    the JSON holds lists too (refused beside a body)."""
    if "body" not in raw:
        return None
    if lists:
        raise PlanFormatError(f"{source}: invalid plan: lists and a body")
    pin = raw["body"]
    bad = f"{source}: invalid plan: body must be "
    if not isinstance(pin, dict) or set(pin) != {"format", "file", "sha256", "counts"}:
        raise PlanFormatError(bad + "an object of format, file, sha256 and counts")
    if pin["format"] != FORMAT:
        raise PlanFormatError(bad + f'in format "{FORMAT}"')
    name = pin["file"]
    if not isinstance(name, str) or not _plain_name(name):
        raise PlanFormatError(bad + "a file name in the plan's folder (no path)")
    if not isinstance(pin["sha256"], str) or not _HEX.fullmatch(pin["sha256"]):
        raise PlanFormatError(bad + "pinned by a SHA-256 (64 lowercase hex)")
    counts = pin["counts"]
    if (
        not isinstance(counts, dict)
        or set(counts) != set(codec.LISTS)
        or not all(type(n) is int and n >= 0 for n in counts.values())
    ):
        raise PlanFormatError(bad + "counted: " + ", ".join(codec.LISTS))
    return pin


def _plain_name(name: str) -> bool:
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
        and name.isprintable()
    )


class Body:
    """A pinned Parquet body, open, checked against its pin. Close it."""

    def __init__(self, f: IO[bytes], pin: Mapping[str, Any], source: str) -> None:
        """``f``: the body's bytes (this object owns it); checked here: its SHA-256,
        its columns, its counts."""
        self.file = f
        self.source = source
        self.sha256 = str(pin["sha256"])
        self.counts: dict[str, int] = dict(pin["counts"])
        self._db = duckdb.connect(":memory:", config=_READING)
        try:
            self._check(str(pin["file"]))
        except BaseException:
            self.close()
            raise

    @classmethod
    def beside(
        cls, plan: Path, pin: Mapping[str, Any], source: str, *, snapshot: bool = False
    ) -> Body:
        """The body named by ``pin`` in ``plan``'s folder: a regular file, never a
        symlink or a FIFO; with ``snapshot``, read from a private copy."""
        path = plan.parent / str(pin["file"])
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as e:
            raise PlanFormatError(f"cannot read plan body {path}: {e.strerror}") from None
        f = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            f.close()
            raise PlanFormatError(f"cannot read plan body {path}: not a regular file")
        return cls(copy_aside(f, f"plan body {path}") if snapshot else f, pin, source)

    @classmethod
    def of_file(cls, f: IO[bytes], pin: Mapping[str, Any], source: str) -> Body:
        """A body in an open file (a store's record); the body holds its own descriptor."""
        return cls(os.fdopen(os.dup(f.fileno()), "rb"), pin, source)

    @property
    def _path(self) -> str:
        return f"/dev/fd/{self.file.fileno()}"

    def _check(self, name: str) -> None:
        found = _hash_fd(self.file.fileno())
        if found != self.sha256:
            raise PlanFormatError(
                f"{self.source}: its body {name} is not the one it pins "
                f"(SHA-256 {found}, pinned {self.sha256})"
            )
        try:
            described = self._db.execute(
                "DESCRIBE SELECT * FROM read_parquet(?)", [self._path]
            ).fetchall()
            if [(str(c[0]), str(c[1])) for c in described] != _COLUMNS:
                raise PlanFormatError(f"{self.source}: its body {name} is not a regplan plan body")
            rows = self._db.execute(
                "SELECT list, count(*) FROM read_parquet(?) GROUP BY list", [self._path]
            ).fetchall()
        except duckdb.Error as e:
            raise PlanFormatError(
                f"{self.source}: cannot read its body {name}: {_first(e)}"
            ) from None
        if {str(k): int(n) for k, n in rows if n} != {k: n for k, n in self.counts.items() if n}:
            raise PlanFormatError(f"{self.source}: its body {name} does not hold the counts pinned")

    def items(self, name: str) -> Iterator[Any]:
        """The items of list ``name``, parsed, ``BATCH`` rows at a time (each pass has a
        cursor of its own: passes may be interleaved)."""
        cursor = self._db.cursor()
        try:
            result = cursor.execute(
                "SELECT idx, item FROM read_parquet(?) WHERE list = ?", [self._path, name]
            )
            expected = 0
            while batch := result.fetchmany(BATCH):
                for idx, item in batch:
                    if idx != expected or not isinstance(item, str):
                        raise PlanFormatError(
                            f"{self.source}: invalid plan body: {name}[{expected}] is missing"
                        )
                    expected += 1
                    yield _parse(item, self.source, f"{name}[{idx}]")
        except duckdb.Error as e:
            raise PlanFormatError(f"{self.source}: cannot read its body: {_first(e)}") from None
        finally:
            cursor.close()

    def copy(self) -> Iterator[bytes]:
        """The body's bytes, piece by piece, as checked: a file changed since raises
        (after its last piece)."""
        h = hashlib.sha256()
        at = 0
        while data := os.pread(self.file.fileno(), 1 << 20, at):
            at += len(data)
            h.update(data)
            yield data
        if h.hexdigest() != self.sha256:
            raise PlanFormatError(f"{self.source}: its body changed while it was read")

    def close(self) -> None:
        self._db.close()
        self.file.close()


def _parse(item: str, source: str, where: str) -> Any:
    try:
        return json.loads(item, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise PlanFormatError(f"{source}: invalid plan body: {where} is not JSON") from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)  # NaN, Infinity: not JSON


def _hash_fd(fd: int) -> str:
    h = hashlib.sha256()
    at = 0
    while data := os.pread(fd, 1 << 20, at):
        at += len(data)
        h.update(data)
    return h.hexdigest()


def copy_aside(original: IO[bytes], what: str) -> IO[bytes]:
    """A private copy of ``original`` (closed): an unnamed file in the temporary folder
    that only this process holds (``what`` names the file in a refusal)."""
    with original:
        try:
            copy = tempfile.TemporaryFile(prefix="regplan-")  # noqa: SIM115 (returned open)
        except OSError as e:
            raise PlanFormatError(f"cannot copy {what} aside: {e.strerror}") from None
        try:
            shutil.copyfileobj(original, copy, 1 << 20)
            copy.flush()
        except OSError as e:
            copy.close()
            raise PlanFormatError(f"cannot copy {what} aside: {e.strerror}") from None
    return copy


def _first(e: Exception) -> str:
    return (str(e).strip().splitlines() or ["?"])[0]
