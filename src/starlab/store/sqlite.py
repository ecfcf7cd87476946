"""One SQLite file per run directory: the run's config, every genome and evaluation, every generation.

Durability: WAL journal with ``synchronous=FULL``, and each evaluation is committed the moment it is handed
over, so a crash (even SIGKILL) loses at most the evaluations still running. Evaluations are keyed by
``(canonical genome hash, protocol, seed)`` and inserted at most once, so none is ever stored (or, through
the search's lookup, run) twice. An :class:`~starlab.assess.Evaluation` is stored whole and read back equal.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlab.assess.record import Evaluation
from starlab.errors import SettingError

STORE_FILE = "run.sqlite"
SCHEMA_VERSION = 2  # 2: evaluations keep width and scores; generations keep their Pareto front

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
    finished REAL NOT NULL
);
"""

_EVALUATION_COLUMNS = "g.canonical, e.hash, e.protocol, e.seed, e.width, e.status, e.quality, e.scores, e.params, "
_EVALUATION_COLUMNS += "e.cache_bytes, e.seconds, e.worker, e.metrics"
_SELECT = f"SELECT {_EVALUATION_COLUMNS} FROM evaluations e JOIN genomes g ON g.hash = e.hash"


@dataclass(frozen=True)
class Generation:
    """One generation's surviving population (members with their objective values) and its Pareto front."""

    generation: int
    population: list[dict[str, Any]]
    front: list[int]  # indices into population of its non-dominated members
    hypervolume: float | None

    @property
    def front_members(self) -> list[dict[str, Any]]:
        return [self.population[i] for i in self.front]


class StoreError(SettingError):
    """A run directory that cannot be used (missing, corrupt, or holding another run)."""


class RunStore:
    """The SQLite file of one run. Use as a context manager or call :meth:`close`."""

    def __init__(self, directory: str | Path, create: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STORE_FILE
        if not create and not self.path.is_file():
            raise StoreError("no starlab run in {0} (missing {1})", self.directory, STORE_FILE)
        exists = self.path.is_file()
        if exists:
            _check_is_a_starlab_store(self.path)  # read-only: a foreign or old file is refused untouched
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            if not exists:
                self.db.executescript(SCHEMA)
                self.set_meta("schema_version", SCHEMA_VERSION)
        except sqlite3.DatabaseError as error:
            raise StoreError("run store {0} is unreadable or corrupt: {1}", self.path, error) from None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # ---- metadata (the run's config) -----------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # ---- evaluations ---------------------------------------------------------------------------------
    def add_evaluation(self, evaluation: Evaluation) -> bool:
        """Store a finished evaluation; returns False (and stores nothing) if its key is already present."""
        e = evaluation
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO genomes VALUES (?, ?)", (e.hash, e.genome))
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO evaluations (hash, protocol, seed, width, status, quality, scores, params, "
                "cache_bytes, seconds, worker, metrics, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (e.hash, e.protocol, e.seed, e.width, e.status.value, e.quality, json.dumps(e.scores), e.params,
                 e.cache_bytes, e.seconds, e.worker, json.dumps(e.metrics), time.time()),
            )  # fmt: skip
        return cursor.rowcount == 1

    def get_evaluation(self, genome_hash: str, protocol: str, seed: int) -> Evaluation | None:
        query = f"{_SELECT} WHERE e.hash = ? AND e.protocol = ? AND e.seed = ?"
        row = self.db.execute(query, (genome_hash, protocol, seed)).fetchone()
        return None if row is None else _evaluation(row)

    def evaluations(self, protocol: str | None = None) -> list[Evaluation]:
        """All evaluations (of one ``protocol``, or all) in the order they were stored."""
        where, args = ("WHERE e.protocol = ?", (protocol,)) if protocol else ("", ())
        rows = self.db.execute(f"{_SELECT} {where} ORDER BY e.id", args).fetchall()
        return [_evaluation(row) for row in rows]

    def remove_failed(self) -> int:
        """Forget every failed evaluation (so that the search runs it again); returns how many there were."""
        with self.db:
            return self.db.execute("DELETE FROM evaluations WHERE status = 'failed'").rowcount

    def count_evaluations(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    # ---- generations ---------------------------------------------------------------------------------
    def add_generation(self, generation: Generation) -> None:
        g = generation
        self.db.execute(
            "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)",
            (g.generation, json.dumps(g.population), json.dumps(g.front), g.hypervolume, time.time()),
        )

    def generations(self) -> list[Generation]:
        rows = self.db.execute("SELECT generation, population, front, hypervolume FROM generations ORDER BY generation")
        return [Generation(g, json.loads(p), json.loads(f), hv) for g, p, f, hv in rows.fetchall()]


def _check_is_a_starlab_store(path: Path) -> None:
    """Refuse, without writing a byte, a file that is not a run store of this schema."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = (
                db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if "meta" in tables
                else None
            )
    except sqlite3.DatabaseError as error:
        raise StoreError("run store {0} is unreadable or corrupt: {1}", path, error) from None
    if row is None:
        raise StoreError("{0} is not a starlab run store (no schema version); it was left untouched", path)
    version = json.loads(row[0])
    if version != SCHEMA_VERSION:
        raise StoreError(
            "run store {0} has schema {1}; this starlab reads schema {2} (the run was written by another "
            "version of starlab)", path, version, SCHEMA_VERSION,
        )  # fmt: skip


def _evaluation(row: tuple) -> Evaluation:
    genome, hash_, protocol, seed, width, status, quality, scores, params, cache, seconds, worker, metrics = row
    return Evaluation(
        genome, hash_, protocol, seed, width, status, quality, json.loads(scores), params, cache, seconds, worker,
        json.loads(metrics),
    )  # fmt: skip
