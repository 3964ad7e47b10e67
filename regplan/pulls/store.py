"""The pull store: one SQLite file, the only module that touches it.

Tables: ``seen`` (every pull's key: a pull recorded twice counts once), ``digests``
(last pull and count per repository and manifest), ``tags`` (per repository, tag and
the manifest it gave, ``''`` when the source did not say), ``spans`` (per source, the
times its records cover). A batch of pulls is one transaction, committed with
``synchronous=FULL`` in WAL mode: when ``add`` returns, the pulls are on disk.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from regplan.pulls.facts import Pulls, Seen, Span
from regplan.pulls.pull import Pull, PullsError

FORMAT = "regplan.pulls"
VERSION = "1"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seen(key TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS digests(
  repo TEXT NOT NULL, digest TEXT NOT NULL, last REAL NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY(repo, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tags(
  repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, last REAL NOT NULL,
  count INTEGER NOT NULL, PRIMARY KEY(repo, tag, digest)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spans(
  source TEXT NOT NULL, since REAL NOT NULL, until REAL NOT NULL,
  PRIMARY KEY(source, since)) WITHOUT ROWID;
"""

_MERGE = """
DELETE FROM batch WHERE key IN (SELECT key FROM seen);
INSERT INTO seen(key) SELECT key FROM batch;
INSERT INTO digests(repo, digest, last, count)
  SELECT repo, digest, max(at), count(*) FROM batch WHERE digest IS NOT NULL
  GROUP BY repo, digest
  ON CONFLICT(repo, digest) DO UPDATE SET
    last = max(last, excluded.last), count = count + excluded.count;
INSERT INTO tags(repo, tag, digest, last, count)
  SELECT repo, tag, coalesce(digest, ''), max(at), count(*) FROM batch WHERE tag IS NOT NULL
  GROUP BY repo, tag, coalesce(digest, '')
  ON CONFLICT(repo, tag, digest) DO UPDATE SET
    last = max(last, excluded.last), count = count + excluded.count;
"""

BATCH = 20_000
"""Pulls per transaction on import."""


class Store:
    """An open pull store (``open``); close it, or use it as a context manager."""

    def __init__(self, path: Path, db: sqlite3.Connection) -> None:
        self.path = path
        self.db = db

    @classmethod
    def open(cls, path: Path, *, create: bool = False) -> Store:
        """The store at ``path``; with ``create`` a new one is made when there is none.
        PullsError when the file is not a pull store (or cannot be opened)."""
        if not create and not path.is_file():
            raise PullsError(f"{path}: no such pull store")
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise PullsError(f"{path}: cannot open ({e})") from None
        try:
            db.execute("PRAGMA busy_timeout=10000")
            cls._check(db, path, create)  # before anything is written to it
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as e:
            db.close()
            raise PullsError(f"{path}: not a pull store ({e})") from None
        except PullsError:
            db.close()
            raise
        return cls(path, db)

    @staticmethod
    def _check(db: sqlite3.Connection, path: Path, create: bool) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables and create:
            db.executescript(SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format', ?), ('version', ?)",
                (FORMAT, VERSION),
            )
            return
        meta = dict(db.execute("SELECT k, v FROM meta")) if "meta" in tables else {}
        if meta.get("format") != FORMAT:
            raise PullsError(f"{path}: not a pull store (no {FORMAT} record)")
        if meta.get("version") != VERSION:
            raise PullsError(
                f"{path}: pull store version {meta.get('version')}; this regplan reads {VERSION}"
            )

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add(self, pulls: Iterable[Pull], span: tuple[str, float, float] | None = None) -> int:
        """Record ``pulls`` (those already recorded, by key, count nothing) and extend
        ``span`` (source, since, until), in one transaction; how many were new."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS batch(key TEXT PRIMARY KEY, repo TEXT, "
                "digest TEXT, tag TEXT, at REAL) WITHOUT ROWID"
            )
            db.executemany(
                "INSERT OR IGNORE INTO batch VALUES (?, ?, ?, ?, ?)",
                ((p.key, p.repo, p.digest, p.tag, p.at) for p in pulls),
            )
            for statement in _MERGE.split(";"):
                if statement.strip():
                    db.execute(statement)
            new: int = db.execute("SELECT count(*) FROM batch").fetchone()[0]
            db.execute("DELETE FROM batch")
            if span is not None:
                db.execute(
                    "INSERT INTO spans VALUES (?, ?, ?) ON CONFLICT(source, since) "
                    "DO UPDATE SET until = max(until, excluded.until)",
                    span,
                )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise PullsError(f"{self.path}: cannot record pulls ({e})") from None
        return new

    def read(self, name: str | None = None) -> Pulls:
        """Everything a plan needs, read in one transaction (a receiver may write on);
        times to the second (spans inward), as a plan records them."""
        db = self.db
        digest = hashlib.sha256()
        try:
            db.execute("BEGIN")
            spans = tuple(
                Span(source, math.ceil(since), math.floor(until))
                for source, since, until in _rows(
                    db, "SELECT source, since, until FROM spans ORDER BY 1, 2", digest
                )
            )
            digests = {
                (r, d): Seen(math.floor(last), n)
                for r, d, last, n in _rows(
                    db, "SELECT repo, digest, last, count FROM digests ORDER BY 1, 2", digest
                )
            }
            tags = {
                (r, t): Seen(math.floor(last), n)
                for r, t, last, n in _rows(
                    db,
                    "SELECT repo, tag, last, count FROM tags WHERE digest = '' ORDER BY 1, 2",
                    digest,
                )
            }
            db.execute("COMMIT")
        except sqlite3.Error as e:
            raise PullsError(f"{self.path}: cannot read ({e})") from None
        return Pulls(
            file=name or str(self.path),
            sha256=digest.hexdigest(),
            spans=spans,
            digests=digests,
            tags=tags,
        )


def _rows(db: sqlite3.Connection, query: str, digest: hashlib._Hash) -> Iterator[tuple[Any, ...]]:
    for row in db.execute(query):
        digest.update(repr(row).encode() + b"\n")
        yield row


def read(path: Path) -> Pulls:
    """The pull store at ``path`` as a plan reads it (``plan --pulls``)."""
    with Store.open(path) as s:
        return s.read(str(path))
