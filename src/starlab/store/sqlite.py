"""One SQLite file per run directory: the run's config, every genome and evaluation, every generation.

Durability: WAL journal with ``synchronous=FULL``, and each evaluation is committed the moment it finishes,
so a crash (even SIGKILL) loses at most the evaluations still running. Evaluations are keyed by
``(canonical genome hash, protocol, seed)`` and inserted at most once, so none is ever stored (or, through
the search's lookup, run) twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlab.genome import Genome

STORE_FILE = "run.sqlite"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS genomes (hash TEXT PRIMARY KEY, canonical TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hash TEXT NOT NULL REFERENCES genomes(hash),
    protocol TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL,
    quality REAL NOT NULL,
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
    hypervolume REAL,
    finished REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Evaluation:
    """One finished assessment of one architecture."""

    hash: str
    protocol: str
    seed: int
    status: str
    quality: float
    params: int
    cache_bytes: int
    seconds: float
    worker: str
    metrics: dict[str, Any]


class StoreError(ValueError):
    """A run directory that cannot be used (missing, corrupt, or holding another run)."""


class RunStore:
    """The SQLite file of one run. Use as a context manager or call :meth:`close`."""

    def __init__(self, directory: str | Path, create: bool = False) -> None:
        self.directory = Path(directory)
        self.path = self.directory / STORE_FILE
        if not create and not self.path.is_file():
            raise StoreError(f"no starlab run in {self.directory} (missing {STORE_FILE})")
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            version = self.get_meta("schema_version")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"run store {self.path} is unreadable or corrupt: {error}") from None
        if version is None:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise StoreError(f"run store {self.path} has schema {version}; this starlab reads {SCHEMA_VERSION}")

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
    def add_evaluation(self, genome: Genome, evaluation: Evaluation) -> bool:
        """Store a finished evaluation; returns False (and stores nothing) if its key is already present."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("INSERT OR IGNORE INTO genomes VALUES (?, ?)", (genome.hash(), genome.canonical().text()))
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO evaluations (hash, protocol, seed, status, quality, params, cache_bytes, "
                "seconds, worker, metrics, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (evaluation.hash, evaluation.protocol, evaluation.seed, evaluation.status, evaluation.quality,
                 evaluation.params, evaluation.cache_bytes, evaluation.seconds, evaluation.worker,
                 json.dumps(evaluation.metrics), time.time()),
            )  # fmt: skip
        return cursor.rowcount == 1

    def get_evaluation(self, genome_hash: str, protocol: str, seed: int) -> Evaluation | None:
        row = self.db.execute(
            "SELECT hash, protocol, seed, status, quality, params, cache_bytes, seconds, worker, metrics "
            "FROM evaluations WHERE hash = ? AND protocol = ? AND seed = ?",
            (genome_hash, protocol, seed),
        ).fetchone()
        return None if row is None else Evaluation(*row[:9], metrics=json.loads(row[9]))

    def evaluations(self) -> list[tuple[str, Evaluation]]:
        """All evaluations in the order they finished, with each genome's canonical text."""
        rows = self.db.execute(
            "SELECT g.canonical, e.hash, e.protocol, e.seed, e.status, e.quality, e.params, e.cache_bytes, "
            "e.seconds, e.worker, e.metrics FROM evaluations e JOIN genomes g ON g.hash = e.hash ORDER BY e.id"
        ).fetchall()
        return [(row[0], Evaluation(*row[1:10], metrics=json.loads(row[10]))) for row in rows]

    def count_evaluations(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]

    # ---- generations ---------------------------------------------------------------------------------
    def add_generation(self, generation: int, population: list[dict], hypervolume: float | None) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?)",
            (generation, json.dumps(population), hypervolume, time.time()),
        )

    def generations(self) -> list[tuple[int, list[dict], float | None]]:
        rows = self.db.execute("SELECT generation, population, hypervolume FROM generations ORDER BY generation")
        return [(g, json.loads(p), hv) for g, p, hv in rows.fetchall()]
