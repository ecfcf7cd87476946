"""One SQLite file per run directory: the run's config, every genome and evaluation, every generation.

Durability: WAL journal with ``synchronous=FULL``, and each evaluation is committed the moment it is handed
over, so a crash (even SIGKILL) loses at most the evaluations still running. Evaluations are keyed by
``(canonical genome hash, protocol, seed)`` and inserted at most once, so none is ever stored (or, through
the search's lookup, run) twice. An :class:`~starlab.assess.Evaluation` is stored whole and read back equal.

Readers (``report``, ``export``) open the store read-only and never write a byte beside it: the file alone
(``immutable``) when it has no write-ahead log; through a live search's log when one is running; otherwise
through a private copy of the file and its log, where SQLite's recovery applies the log. A log is applied (by
a reader's copy or a resumed search) only when it belongs to the store: every write transaction also counts
up the store's ``revision`` in its meta table, next to the ``store_id`` it got when created, so a log must
bring the same store id and no lower revision than the file holds. A stale log (an older copy of the same
store) or another store's log is refused, and both files are left untouched.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlab.assess.record import Evaluation
from starlab.genome import Genome
from starlab.store.error import StoreError
from starlab.store.lock import held_by_a_writer

STORE_FILE = "run.sqlite"
WAL_SUFFIX = "-wal"  # SQLite's write-ahead log beside the store; "-shm" is its index
SCHEMA_VERSION = 3  # 2: evaluations keep width and scores; generations keep their Pareto front; 3: and stats

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS genomes (hash TEXT PRIMARY KEY, canonical TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL REFERENCES genomes(hash),
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    width INTEGER NOT NULL,
    status TEXT NOT NULL,
    quality REAL NOT NULL,
    scores TEXT NOT NULL,
    params INTEGER NOT NULL,
    cache_bytes INTEGER NOT NULL,
    seconds REAL NOT NULL,
    worker TEXT NOT NULL,
    metrics TEXT NOT NULL,
    finished REAL NOT NULL,
    UNIQUE (hash, protocol, seed)
);
CREATE TABLE IF NOT EXISTS generations (
    generation INTEGER PRIMARY KEY,
    population TEXT NOT NULL,
    front TEXT NOT NULL,
    hypervolume REAL,
    finished REAL NOT NULL,
    stats TEXT NOT NULL
);
"""

TABLES = ("meta", "genomes", "evaluations", "generations")

_EVALUATION_COLUMNS = "g.canonical, e.hash, e.protocol, e.seed, e.width, e.status, e.quality, e.scores, e.params, "
_EVALUATION_COLUMNS += "e.cache_bytes, e.seconds, e.worker, e.metrics"
_SELECT = f"SELECT {_EVALUATION_COLUMNS} FROM evaluations e JOIN genomes g ON g.hash = e.hash"


@dataclass(frozen=True)
class Generation:
    """One generation's surviving population (members with their objective values) and its Pareto front.

    ``stats`` is what the search measured about itself by then: evaluations and seconds spent per rung,
    promotions, rank agreement between rungs and of the surrogate's predictions (JSON data).
    """

    generation: int
    population: list[dict[str, Any]]
    front: list[int]  # indices into population of its non-dominated members
    hypervolume: float | None
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def front_members(self) -> list[dict[str, Any]]:
        return [self.population[i] for i in self.front]


def _guarded(method):
    """SQLite's own errors (a damaged page, a missing table, a full disk) as one-line store errors."""

    @functools.wraps(method)
    def guarded(self: RunStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as error:
            raise StoreError("run store {0} is unreadable or corrupt: {1}", self.path, error) from None

    return guarded


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RunStore:
    """The SQLite file of one run. Use as a context manager or call :meth:`close`."""

    def __init__(self, directory: str | Path, create: bool = False, readonly: bool = False) -> None:
        if not isinstance(directory, (str, os.PathLike)) or not str(directory).strip():  # "" would be "."
            raise StoreError("no run directory given; name one (such as runs/demo)")
        if create and readonly:
            raise ValueError("a read-only run store cannot be created")
        self.directory = Path(directory)
        self.path = self.directory / STORE_FILE
        self._copy: Path | None = None  # a reader's private copy of the store and its log, removed on close
        self.identity: tuple[int, int] | None = None  # a writer's store file (device, inode): check_in_place
        exists = self._exists()
        if not create and not exists:
            raise StoreError("no starlab run in {0} (missing {1})", self.directory, STORE_FILE)
        if exists:  # read-only: a foreign, old or corrupt file (or write-ahead log) is refused untouched
            view = _View.open(self.path)
            try:
                _check_is_a_starlab_store(view.db, self.path)
            except BaseException:
                view.close()
                raise
            if readonly:
                self.db, self._copy = view.db, view.copy
                return
            view.close()
        self._open_for_writing(exists)

    def _exists(self) -> bool:
        try:
            if self.directory.exists() and not self.directory.is_dir():
                raise StoreError("{0} is a file, not a run directory", self.directory)
            if self.path.exists() and not self.path.is_file():
                raise StoreError("{0} is not a file; a run directory holds its store in {1}", self.path, STORE_FILE)
            return self.path.is_file()
        except (OSError, ValueError) as error:
            if isinstance(error, StoreError):
                raise
            raise StoreError("cannot use {0} as a run directory: {1}", self.directory, _reason(error)) from None

    def _open_for_writing(self, exists: bool) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError) as error:
            raise StoreError("cannot create the run directory {0}: {1}", self.directory, _reason(error)) from None
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as error:
            raise StoreError("cannot open the run store {0}: {1}", self.path, error) from None
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.identity = _identity(self.path)
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                if not exists:
                    for statement in filter(str.strip, SCHEMA.split(";")):
                        self.db.execute(statement)
                    self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))
                # a store made before stores had an identity gets one now (its log is then checked too)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (json.dumps(uuid.uuid4().hex),))
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('revision', '0')")
            # the file itself holds the identity (and a recovered log's work) from now on, so that any later
            # log can be checked against it; passive: a running search's log is never waited for
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (sqlite3.Error, StoreError, OSError) as error:
            self.db.close()
            if isinstance(error, StoreError):
                raise
            raise StoreError("run store {0} is unreadable or corrupt: {1}", self.path, error) from None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        if self._copy is not None:
            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: refused once the file is gone (:meth:`check_in_place`), taken at once
        (``BEGIN IMMEDIATE``), and counting the store's revision up, which tells its own log from a stale one."""
        self.check_in_place()
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            yield self.db
            self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'revision'")

    # ---- metadata (the run's config) -----------------------------------------------------------------
    @_guarded
    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except (TypeError, ValueError, RecursionError):
            raise StoreError("run store {0} is corrupt: its stored {1} is not JSON", self.path, key) from None

    def check_in_place(self) -> None:
        """Refuse to write once the store file was deleted or replaced while open: SQLite would go on writing
        into the unlinked file, and every evaluation stored after that would be lost when the run ends."""
        if self.identity is None:
            return  # a reader's connection: SQLite refuses its writes
        try:
            same = _identity(self.path) == self.identity
        except OSError:
            same = False
        if not same:
            raise StoreError("run store {0} was deleted or replaced while the run was using it; the run stopped so "
                             "that nothing more is written into a file that is gone", self.path)  # fmt: skip

    @_guarded
    def set_meta(self, key: str, value: Any) -> None:
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # ---- evaluations ---------------------------------------------------------------------------------
    @_guarded
    def add_evaluation(self, evaluation: Evaluation) -> bool:
        """Store a finished evaluation; returns False (and stores nothing) if its key is already present."""
        e = evaluation
        with self._writing() as db:
            db.execute("INSERT OR IGNORE INTO genomes VALUES (?, ?)", (e.hash, e.genome))
            cursor = db.execute(
                "INSERT OR IGNORE INTO evaluations (hash, protocol, seed, width, status, quality, scores, params, "
                "cache_bytes, seconds, worker, metrics, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.hash, e.protocol, e.seed, e.width, e.status.value, e.quality, json.dumps(e.scores), e.params,
                 e.cache_bytes, e.seconds, e.worker, json.dumps(e.metrics), time.time()),
            )  # fmt: skip
        return cursor.rowcount == 1

    @_guarded
    def get_evaluation(self, genome_hash: str, protocol: str, seed: int) -> Evaluation | None:
        query = f"{_SELECT} WHERE e.hash = ? AND e.protocol = ? AND e.seed = ?"
        row = self.db.execute(query, (genome_hash, protocol, seed)).fetchone()
        return None if row is None else _evaluation(row, self.path)

    @_guarded
    def evaluations(self, protocol: str | None = None) -> list[Evaluation]:
        """All evaluations (of one ``protocol``, or all) in the order they were stored."""
        where, args = ("WHERE e.protocol = ?", (protocol,)) if protocol else ("", ())
        rows = self.db.execute(f"{_SELECT} {where} ORDER BY e.id", args).fetchall()
        return [_evaluation(row, self.path) for row in rows]

    @_guarded
    def remove_failed(self) -> int:
        """Forget every failed evaluation (so that the search runs it again); returns how many there were."""
        with self._writing() as db:
            removed = db.execute("DELETE FROM evaluations WHERE status = 'failed'").rowcount
        return removed

    @_guarded
    def count_evaluations(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    # ---- generations ---------------------------------------------------------------------------------
    @_guarded
    def add_generation(self, generation: Generation) -> None:
        g = generation
        row = (g.generation, json.dumps(g.population), json.dumps(g.front), g.hypervolume, time.time(),
               json.dumps(g.stats))  # fmt: skip
        with self._writing() as db:
            db.execute("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?)", row)

    @_guarded
    def generations(self) -> list[Generation]:
        query = "SELECT generation, population, front, hypervolume, stats FROM generations ORDER BY generation"
        rows = self.db.execute(query)
        return [_generation(row, self.path) for row in rows.fetchall()]

    def check(self) -> None:
        """Read every stored record (config, evaluations, generations): a one-line ``StoreError`` for the first
        that is corrupt, before a resumed search replays or writes anything."""
        self.get_meta("config")
        self.evaluations()
        self.generations()


def _identity(path: Path) -> tuple[int, int]:
    """What makes a file this file: its device and inode (a new file at the same path has another)."""
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _uri(path: Path, **query: str) -> str:
    """``path`` as an SQLite URI: a ``?``, ``#`` or ``%`` in a directory's name is escaped, not read as the
    URI's query (which opened, and created, a stray file named by the path's first part)."""
    return path.absolute().as_uri() + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _connect(path: Path, **query: str) -> sqlite3.Connection:
    try:
        return sqlite3.connect(_uri(path, **query), uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreError("run store {0} cannot be opened: {1}", path, error) from None


def _stamp(db: sqlite3.Connection) -> tuple[Any, Any] | None:
    """(store id, revision) as the store's meta table holds them, or None if it holds none (or is unreadable)."""
    try:
        rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('store_id', 'revision')").fetchall())
        return (json.loads(rows["store_id"]), json.loads(rows["revision"])) if len(rows) == 2 else None
    except (sqlite3.Error, KeyError, TypeError, ValueError, RecursionError):
        return None


@dataclass
class _View:
    """A read-only connection to a store as SQLite would see it, that writes nothing beside it; ``copy`` is the
    private folder holding a copy of the store and its log (removed by :meth:`close`)."""

    db: sqlite3.Connection
    copy: Path | None = None

    @classmethod
    def open(cls, path: Path) -> _View:
        wal = path.with_name(path.name + WAL_SUFFIX)
        try:
            has_log = wal.is_file() and wal.stat().st_size > 0
        except OSError:
            has_log = False
        if not has_log:  # the file is the whole store: read it as it is (no -wal or -shm is made)
            return cls(_connect(path, mode="ro", immutable="1"))
        if held_by_a_writer(path.parent):  # a running search's log: read through it, as SQLite shares it
            return cls(_connect(path, mode="ro"))
        return cls._recovered_copy(path, wal)

    @classmethod
    def _recovered_copy(cls, path: Path, wal: Path) -> _View:
        """The store with its log applied in a private copy, if the log belongs to it (see the module)."""
        copy = Path(tempfile.mkdtemp(prefix="starlab-store-"))
        try:
            shutil.copyfile(path, copy / path.name)
            try:
                shutil.copyfile(wal, copy / wal.name)
            except FileNotFoundError:  # a search that just ended checkpointed it: the file is the store
                shutil.rmtree(copy, ignore_errors=True)
                return cls(_connect(path, mode="ro", immutable="1"))
            alone = _connect(copy / path.name, mode="ro", immutable="1")
            try:
                before = _stamp(alone)
            finally:
                alone.close()
            db = _connect(copy / path.name)  # SQLite's recovery applies the copied log here
            after = _stamp(db)
            if before is not None and (after is None or after[0] != before[0] or not after[1] >= before[1]):
                db.close()
                raise _foreign_log(path, wal, before, after)
            db.execute("PRAGMA query_only = ON")
            return cls(db, copy)
        except BaseException as error:
            shutil.rmtree(copy, ignore_errors=True)
            if isinstance(error, (StoreError, KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(error, (OSError, sqlite3.Error, TypeError)):
                raise StoreError("cannot read the run store {0}: {1}", path, _reason(error)) from None
            raise

    def close(self) -> None:
        self.db.close()
        if self.copy is not None:
            shutil.rmtree(self.copy, ignore_errors=True)


def _foreign_log(path: Path, wal: Path, before: tuple, after: tuple | None) -> StoreError:
    if after is None or after[0] != before[0]:
        why = "belongs to another store (a log copied in, or left by a store this one replaced)"
    else:
        why = f"is older than the store (revision {after[1]} < {before[1]}: left from an earlier copy of it)"
    return StoreError(
        "run store {0} has a write-ahead log {1} that {2}; applying it would lose or mix in evaluations, so both "
        "were left untouched: move {1} away to use the store as it is", path, wal.name, why,
    )  # fmt: skip


def _check_is_a_starlab_store(db: sqlite3.Connection, path: Path) -> None:
    """Refuse, without writing a byte, a file that is not an intact run store of this schema (read through
    ``db``, a :class:`_View`'s connection, which the caller closes)."""
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if "meta" in tables else None
        # every page, read once (a run store is small): a damaged file is refused before anything writes to it
        problems = [line for (line,) in db.execute("PRAGMA quick_check(3)").fetchall() if line != "ok"]
    except sqlite3.DatabaseError as error:
        raise StoreError("run store {0} is unreadable or corrupt: {1}", path, error) from None
    if row is None:
        raise StoreError("{0} is not a starlab run store (no schema version); it was left untouched", path)
    if problems:
        raise StoreError("run store {0} is corrupt ({1}); it was left untouched", path, "; ".join(problems)[:300])
    missing = [table for table in TABLES if table not in tables]
    if missing:
        raise StoreError("run store {0} is corrupt (no {1} table); it was left untouched", path, ", ".join(missing))
    try:
        version = json.loads(row[0])
    except (TypeError, ValueError):
        version = row[0]
    if isinstance(version, bool) or not isinstance(version, int):  # '"3"' read as "has schema 3; reads schema 3"
        what = f"the text {version[:40]!r}" if isinstance(version, str) else str(row[0])[:40]
        raise StoreError("run store {0} is corrupt: its schema version is {1}, not a whole number (the store was "
                         "edited or damaged); it was left untouched", path, what)  # fmt: skip
    if version != SCHEMA_VERSION:
        raise StoreError(
            "run store {0} has schema {1}; this starlab reads schema {2} (the run was written by another "
            "version of starlab)", path, version, SCHEMA_VERSION,
        )  # fmt: skip


def _evaluation(row: tuple, path: Path) -> Evaluation:
    """A stored row as the record it was; a row that cannot be one (edited, damaged) is a ``StoreError``."""
    genome, hash_, protocol, seed, width, status, quality, scores, params, cache, seconds, worker, metrics = row
    try:
        scores, metrics = json.loads(scores), json.loads(metrics)
        checks = {
            "genome": isinstance(genome, str), "hash": isinstance(hash_, str), "protocol": isinstance(protocol, str),
            "seed": _is_int(seed), "width": _is_int(width), "quality": _is_number(quality),
            "scores": isinstance(scores, dict) and all(isinstance(k, str) and _is_number(v) for k, v in scores.items()),
            "params": _is_int(params), "cache_bytes": _is_int(cache), "seconds": _is_number(seconds),
            "worker": isinstance(worker, str), "metrics": isinstance(metrics, dict),
        }  # fmt: skip
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"its {', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not what was stored")
        Genome.parse(genome)
        return Evaluation(
            genome, hash_, protocol, seed, width, status, quality, scores, params, cache, seconds, worker, metrics
        )
    except (TypeError, ValueError, RecursionError) as error:
        raise StoreError(
            "run store {0} is corrupt: the evaluation of {1} ({2}) cannot be read: {3}",
            path, str(hash_)[:40], str(protocol)[:40], str(error)[:200],
        ) from None  # fmt: skip


def _generation(row: tuple, path: Path) -> Generation:
    number, population, front, hypervolume, stats = row
    try:
        population, front, stats = json.loads(population), json.loads(front), json.loads(stats)
        members_ok = isinstance(population, list) and all(
            isinstance(m, dict) and isinstance(m.get("genome"), str) and isinstance(m.get("hash"), str)
            for m in population
        )
        front_ok = isinstance(front, list) and all(_is_int(i) and 0 <= i < len(population) for i in front)
        hypervolume_ok = hypervolume is None or _is_number(hypervolume)
        if not (_is_int(number) and members_ok and front_ok and hypervolume_ok and isinstance(stats, dict)):
            raise ValueError("its population, front, hypervolume or stats are not what was stored")
    except (TypeError, ValueError, RecursionError) as error:
        raise StoreError(
            "run store {0} is corrupt: generation {1} cannot be read: {2}", path, str(number)[:20], str(error)[:200]
        ) from None
    return Generation(number, population, front, hypervolume, stats)
