"""A plan read as a stream: its header at once, its long lists one item at a time.

A plan of 200,000 targets is a 54 MB file; read whole with ``json.loads`` and
structured, it takes some 300 MiB. Here one pass (ijson's C parser) checks the
whole file's syntax, builds the header (every field but the lists of
``codec.LISTS``) and counts the items of each list; each later pass over one
list (``targets()``, ``kept()``, ``problems()``) structures one item at a time
and forgets it. Memory does not grow with the plan.

Every pass reads the same open file from its start, so a plan replaced (renamed
over) while it is read is not mixed with its successor. With ``snapshot`` (what
``verify``, ``apply`` and ``approve`` use) the file is first copied into an
unnamed temporary file that only this process holds, and every pass reads that:
what the signature check read is what the moves read, even if someone writes
into the plan file meanwhile.

A plan may keep its lists in a Parquet file beside it, pinned in its header
(``plans.body``): the stream checks the pin before any item is used, copies the
Parquet aside too with ``snapshot``, and reads each list from it in batches.

Views take a :class:`Source`: a ``PlanStream`` or a plan already in memory
(``InMemory``, the one ``regplan plan`` just made, or a test's).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import attrs
import ijson

from regplan.errors import PlanFormatError
from regplan.plans import body as planbody
from regplan.plans import codec
from regplan.plans.plan import FORMAT, Image, Kept, Plan, PlanProblem, Target


class Source(Protocol):
    """A plan to render: its header (lists empty), its lists as iterators, their lengths."""

    @property
    def header(self) -> Plan: ...

    @property
    def counts(self) -> Mapping[str, int]:
        """Items of each of ``codec.LISTS``."""
        ...

    def targets(self) -> Iterator[Target]: ...

    def kept(self) -> Iterator[Kept]: ...

    def problems(self) -> Iterator[PlanProblem]: ...

    def images(self) -> Iterator[Image]: ...


class InMemory:
    """A plan already held whole, as a Source."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.header = attrs.evolve(plan, targets=(), kept=(), problems=(), images=())
        self.counts = {name: len(getattr(plan, name)) for name in codec.LISTS}

    def targets(self) -> Iterator[Target]:
        return iter(self.plan.targets)

    def kept(self) -> Iterator[Kept]:
        return iter(self.plan.kept)

    def problems(self) -> Iterator[PlanProblem]:
        return iter(self.plan.problems)

    def images(self) -> Iterator[Image]:
        return iter(self.plan.images)


def source(plan: Plan | Source) -> Source:
    return InMemory(plan) if isinstance(plan, Plan) else plan


class PlanStream:
    """A plan file, read as described above. Use as a context manager (it holds the file)."""

    def __init__(self, path: Path, *, follow: bool = True, snapshot: bool = False) -> None:
        self.path = path
        self.source = str(path)
        self._file = _open(path, follow=follow)
        if snapshot:
            self._file = planbody.copy_aside(self._file, f"plan {path}")
        self._load(lambda pin: planbody.Body.beside(path, pin, self.source, snapshot=snapshot))

    @classmethod
    def of_file(cls, f: IO[bytes], name: str, body: IO[bytes] | None = None) -> PlanStream:
        """A plan in an open file (e.g. a temporary copy of an object); ``name`` for
        messages; ``body``: its pinned Parquet body, when the store keeps one. The
        stream holds its own descriptors of them."""
        self = cls.__new__(cls)
        self.path = Path(name)
        self.source = name
        self._file = os.fdopen(os.dup(f.fileno()), "rb")

        def opened(pin: Mapping[str, Any]) -> planbody.Body:
            if body is None:
                raise PlanFormatError(f"{name}: its body {pin['file']} is not kept beside it")
            return planbody.Body.of_file(body, pin, name)

        self._load(opened)
        return self

    def _load(self, body: Callable[[Mapping[str, Any]], planbody.Body]) -> None:
        self.body: planbody.Body | None = None
        """The pinned Parquet body, checked (None: the lists are in the JSON)."""
        try:
            skim, self.sha256 = self._header()
            """``sha256``: of the bytes the first pass checked (``copy`` writes only those)."""
            self.raw_header: dict[str, Any] = skim.raw
            """The header as parsed (what the signatures cover, but the lists)."""
            self.present: frozenset[str] = frozenset(skim.present)
            """The lists the file holds (a plan may leave out an empty one)."""
            self.counts: Mapping[str, int] = skim.counts
            pin = planbody.pin_of(skim.raw, self.source, lists=bool(self.present))
            if pin is not None:
                self.body = body(pin)
                self.counts = self.body.counts
        except BaseException:
            self.close()
            raise

    @functools.cached_property
    def header(self) -> Plan:
        """The header structured (on first use: a signature check comes before it)."""
        lists: dict[str, list[Any]] = {name: [] for name in codec.LISTS}
        raw = {k: v for k, v in self.raw_header.items() if k != "body"}
        return codec.structure({**raw, **lists}, source=self.source)

    def close(self) -> None:
        self._file.close()
        if self.body is not None:
            self.body.close()

    def __enter__(self) -> PlanStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _rewound(self, *, hashed: bool = False) -> _Reader:
        """A reader from the start of the file, with a position of its own: passes may
        be interleaved (``show --format json`` reads the three lists side by side)."""
        return _Reader(self._file.fileno(), hashed=hashed)

    def _header(self) -> tuple[_Skim, str]:
        """One pass over the whole file: the header and the lists' lengths (in the
        returned skim), any JSON error, and the SHA-256 of the file."""
        skim = _Skim(self.source)
        reader = self._rewound(hashed=True)
        try:
            events = ijson.basic_parse(reader, use_float=True)
            if next(events, None) != ("start_map", None):
                raise PlanFormatError(_NOT_PLAN.format(self.source))
            for event, value in events:
                skim.feed(event, value)
        except ijson.JSONError as e:
            raise _json_error(self.source, e) from None
        codec.check_format(skim.raw, source=self.source)
        while reader.read(1 << 20):  # to the end, for the hash (yajl stops at the last brace)
            pass
        return skim, reader.hexdigest()

    def raw_items(self, name: str) -> Iterator[dict[str, Any]]:
        """The items of list ``name`` as parsed, one at a time."""
        if self.body is not None:
            yield from self.body.items(name)
            return
        try:
            yield from ijson.items(self._rewound(), f"{name}.item", use_float=True)
        except ijson.JSONError as e:  # the file changed under us since the header pass
            raise _json_error(self.source, e) from None

    def copy(self) -> Iterator[bytes]:
        """The file's bytes, piece by piece, as the first pass read them: a file changed
        in place since then raises (after its last piece) instead of ending quietly."""
        reader = self._rewound(hashed=True)
        while data := reader.read(1 << 20):
            yield data
        if reader.hexdigest() != self.sha256:
            raise PlanFormatError(f"{self.source} changed while it was read")

    def body_chunks(self) -> Iterator[bytes]:
        """``codec.canonical(codec.body(raw))`` of the plan as read whole, piece by piece:
        what its signatures cover."""
        body = codec.body({**self.raw_header, **dict.fromkeys(self.present)})
        return codec.canonical_chunks(body, {name: self.raw_items(name) for name in self.present})

    @functools.cached_property
    def body_digest(self) -> bytes:
        """The hex SHA-256 of ``body_chunks``: what a signature signs (computed once)."""
        return codec.hex_sha256(self.body_chunks())

    def check_items(self) -> None:
        """Structure every item once (and forget it): a plan that is not valid says so
        before anything uses it."""
        for _ in itertools.chain(self.targets(), self.kept(), self.problems(), self.images()):
            pass

    def targets(self) -> Iterator[Target]:
        for i, item in enumerate(self.raw_items("targets")):
            yield codec.structure_item(item, Target, source=self.source, where=f"targets[{i}]")

    def kept(self) -> Iterator[Kept]:
        for i, item in enumerate(self.raw_items("kept")):
            yield codec.structure_item(item, Kept, source=self.source, where=f"kept[{i}]")

    def problems(self) -> Iterator[PlanProblem]:
        for i, item in enumerate(self.raw_items("problems")):
            yield codec.structure_item(
                item, PlanProblem, source=self.source, where=f"problems[{i}]"
            )

    def images(self) -> Iterator[Image]:
        for i, item in enumerate(self.raw_items("images")):
            yield codec.structure_item(item, Image, source=self.source, where=f"images[{i}]")


class _Reader:
    """``read`` at a position of its own (``os.pread``) on a shared descriptor; with
    ``hashed``, the SHA-256 of what it read (only the passes that compare bytes)."""

    def __init__(self, fd: int, *, hashed: bool = False) -> None:
        self.fd = fd
        self.at = 0
        self.hashed = hashed
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes (ijson asks for 0 first, to learn the type read gives)."""
        data = os.pread(self.fd, size if size >= 0 else 1 << 20, self.at)
        self.at += len(data)
        if self.hashed:
            self.hash.update(data)
        return data

    def hexdigest(self) -> str:
        """Of what was read (a reader made with ``hashed``)."""
        return self.hash.hexdigest()


class _Skim:
    """The header pass, fed ijson's events without prefixes (a prefix is as long as the
    nesting is deep: a hostile file 100,000 deep would take gigabytes). It knows the
    depth and the top-level field it is in; a short field is built, a long list only
    counted, and nothing may nest deeper than MAX_DEPTH."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.raw: dict[str, Any] = {}
        """Every top-level field but the lists."""
        self.present: set[str] = set()
        """The lists the file holds."""
        self.counts = dict.fromkeys(codec.LISTS, 0)
        self.depth = 1  # inside the plan's object
        self.key = ""
        self.builder: Any = None

    def feed(self, event: str, value: Any) -> None:
        depth = self.depth
        if event in _STARTS:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise PlanFormatError(f"{self.source}: not a regplan plan (JSON nested too deeply)")
        elif event in _ENDS:
            self.depth -= 1
        if depth == 1 and event == "map_key":
            if value in self.raw or value in self.present:
                raise PlanFormatError(f"{self.source}: field {value!r} appears twice")
            self.key = value
        elif depth == 1 and self.key in self.counts and event != "end_map":
            if event != "start_array":
                raise PlanFormatError(f"{self.source}: invalid plan: {self.key} must be a list")
            self.present.add(self.key)
        elif self.key in self.counts and depth == 2 and event not in _ENDS:
            self.counts[self.key] += 1  # an item begins (or is a scalar: structuring says no)
        elif depth == 1 and event in _STARTS:
            self.builder = ijson.ObjectBuilder()
            self.builder.event(event, value)
        elif depth == 1 and event != "end_map":
            self.raw[self.key] = value
        elif self.builder is not None:
            self.builder.event(event, value)
            if self.depth == 1:
                self.raw[self.key] = self.builder.value
                self.builder = None


MAX_DEPTH = 32
"""Nesting a plan never needs (it has 4 levels); deeper is refused in the first pass."""
_STARTS = frozenset({"start_map", "start_array"})
_ENDS = frozenset({"end_map", "end_array"})
_NOT_PLAN = '{}: not a regplan plan (no "format": "' + FORMAT + '")'


def _json_error(source: str, e: Exception) -> PlanFormatError:
    """yajl's message in one line (it comes as bytes, with lines that draw where)."""
    arg = e.args[0] if e.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    first = (text.strip().splitlines() or ["?"])[0]
    if "invalid bytes in UTF8" in first:
        return PlanFormatError(f"{source}: not UTF-8 ({first})")
    return PlanFormatError(f"{source}: not JSON ({first})")


def _open(path: Path, *, follow: bool) -> IO[bytes]:
    """A regular file only: a FIFO (or a device) in its place is refused, never waited
    on; with ``follow=False`` (a plan in the storage's state folder) a symlink too."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise PlanFormatError(f"cannot read plan {path}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise PlanFormatError(f"cannot read plan {path}: not a regular file")
    return os.fdopen(fd, "rb")
