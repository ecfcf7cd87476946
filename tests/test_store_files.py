"""The run store's files (issue 30, items 6 and 7): a run directory whose name holds ``?``, ``#`` or ``%`` works
end to end; readers (``report``, ``export``) change no byte beside the store and create no ``-wal``/``-shm``;
a write-ahead log that does not belong to the store (stale or another run's) is refused, not applied, while
the log a killed search left is still read and recovered.
"""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from starlab.cli import main
from starlab.evolve import Search, SearchConfig, make_executor
from starlab.store import RunStore, StoreError, load_run

STORE_FILES = ("run.sqlite", "run.sqlite-wal", "run.sqlite-shm")


def search(directory, generations=2, seed=0, during=None):
    """A small synthetic search; ``during(store_directory, generation)`` runs after each stored generation,
    while the search still holds its store open (its write-ahead log not yet checkpointed)."""
    config = SearchConfig(protocol="synthetic", depth=4, population=4, generations=generations, seed=seed)
    hook = (lambda g: during(directory, g.generation)) if during else None
    run = Search(directory, make_executor("local"), config, on_generation=hook)
    try:
        return run.run()
    finally:
        run.close()


def store_files(directory) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in STORE_FILES if (directory / name).exists()}


def count(directory) -> int:
    """Evaluations in the store file alone (its log ignored), read without touching anything."""
    uri = (directory / "run.sqlite").absolute().as_uri() + "?mode=ro&immutable=1"
    with sqlite3.connect(uri, uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished search, its log as it was after generation 0 (stale now), the store and log as a search
    killed then would have left them, and another run's log."""
    root = tmp_path_factory.mktemp("store-files")
    taken = {}

    def take(directory, generation):
        if generation == 0:
            taken[directory.name] = store_files(directory)

    search(root / "run", during=take)
    search(root / "other", generations=1, seed=5, during=take)
    crashed = root / "crashed"
    crashed.mkdir()
    for name, data in taken["run"].items():
        (crashed / name).write_bytes(data)
    assert "run.sqlite-wal" in taken["run"] and "run.sqlite-wal" not in store_files(root / "run")
    return {"run": root / "run", "stale": taken["run"]["run.sqlite-wal"], "crashed": crashed,
            "foreign": taken["other"]["run.sqlite-wal"]}  # fmt: skip


def test_a_run_in_a_directory_named_with_question_mark_hash_and_percent_runs_reports_and_exports(tmp_path, capsys):
    run, model = tmp_path / "a?b#c%d", tmp_path / "m?x#y%z"
    argv = ["--protocol", "synthetic", "--population", "4", "--generations", "1", "--depth", "4"]
    assert main(["evolve", "--out", str(run), *argv]) == 0
    assert main(["report", str(run)]) == 0
    assert main(["export", str(run), "--untrained", "--out", str(model)]) == 0
    assert "error" not in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a?b#c%d", "m?x#y%z"]  # no stray file "a"
    assert load_run(run).evaluations and (model / "model.safetensors").is_file()


@pytest.mark.parametrize("log", ["stale", "foreign"])
def test_a_log_that_is_not_the_stores_own_is_refused_by_every_command_and_left_untouched(runs, log, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    finished = count(run)
    (run / "run.sqlite-wal").write_bytes(runs[log])
    before = store_files(run)
    why = "older than the store" if log == "stale" else "belongs to another store"
    for argv in (["report", str(run)], ["export", str(run), "--untrained", "--out", str(tmp_path / "m")],
                 ["evolve", "--resume", str(run)]):  # fmt: skip
        assert main(argv) == 2, argv
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("starlab: error: run store") and why in lines[0], lines
        assert store_files(run) == before and count(run) == finished  # not rolled back, no -shm made
    assert not (tmp_path / "m").exists()
    (run / "run.sqlite-wal").unlink()  # moved away, the store is what it was
    assert len(load_run(run).evaluations) == finished


def test_a_killed_searchs_log_is_read_by_readers_without_a_write_and_recovered_by_resume(runs, tmp_path):
    crashed = tmp_path / "crashed"
    shutil.copytree(runs["crashed"], crashed)
    before = store_files(crashed)
    with RunStore(crashed, readonly=True) as store:
        in_log = store.count_evaluations()
        assert in_log > count(crashed) and store.generations()  # the log's evaluations are the store's
        with pytest.raises(StoreError):
            store.set_meta("x", 1)  # and a reader cannot write
    assert len(load_run(crashed).evaluations) == in_log
    assert store_files(crashed) == before  # nothing written, no -shm made
    with RunStore(crashed) as store:  # a writer (what a resume opens) recovers the log into the file
        assert store.count_evaluations() == in_log
    assert main(["evolve", "--resume", str(crashed)]) == 0
    assert count(crashed) == count(runs["run"])


def test_readers_change_no_byte_of_a_finished_store_and_make_no_log(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    with sqlite3.connect(run / "run.sqlite") as db:  # as a tool that rewrote the file may leave it
        assert db.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
    (run / "run.sqlite").chmod(0o444)  # a store a reader may not write is still readable
    before = store_files(run)
    assert main(["report", str(run)]) == 0
    assert main(["export", str(run), "--untrained", "--out", str(tmp_path / "m")]) == 0
    assert store_files(run) == before and list(before) == ["run.sqlite"]


def test_a_reader_during_a_search_reads_its_live_log(tmp_path):
    seen = []

    def read(directory, generation):
        with RunStore(directory, readonly=True) as store:
            seen.append((generation, len(store.generations()), store.count_evaluations() > 0))

    search(tmp_path / "run", during=read)
    assert seen == [(0, 1, True), (1, 2, True), (2, 3, True)]
