"""Durability on every executor: SIGKILL at random moments loses no finished evaluation, crashed workers are
retried without failing the jobs that only waited, and failed evaluations can be run again on resume.

The searches here run the real command line on the synthetic protocol with a delay (a stand-in for
training) and a journal, in which every assessment notes when it started and ended in whichever process ran
it: the journal counts the work that was really done.
"""

import dataclasses
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager

import pytest

from conftest import RayNodes, wait_for
from starlab.cli import main
from starlab.evolve import Search, SearchConfig, make_executor
from starlab.evolve.executors import EvalJob, ProcessExecutor, WorkerCrashed
from starlab.genome import Genome, random_genome
from starlab.store import RunStore

CONFIG = (("protocol", "synthetic"), ("depth", 4), ("population", 4), ("generations", 1), ("seed", 3))
SEARCH = [text for key, value in CONFIG for text in (f"--{key}", str(value))]
STARLAB = [sys.executable, "-m", "starlab.cli"]


def evolve_argv(directory, journal, executor_argv, resume=False):
    where = ["--resume", str(directory)] if resume else ["--out", str(directory), *SEARCH]
    settings = ["--protocol-setting", "delay_s=0.1", "--protocol-setting", f"journal={journal}"]
    return ["evolve", *where, *([] if resume else settings), *executor_argv]


@contextmanager
def command_line_on(executor):
    """(the command line's executor flags, its environment) for searches on ``executor``. Ray: a cluster of
    one 2-CPU node started for the test, which every attempt connects to (an attempt that started a local Ray
    of its own spent 5-10 s on it, four times a test); a killed attempt's tasks may still end there."""
    flags = ["--executor", executor] + {
        "local": [],
        "process": ["--workers", "2", "--threads", "1"],
        "ray": ["--threads", "1"],
    }[executor]  # a cluster has its own CPUs
    if executor != "ray":
        yield flags, None
        return
    pytest.importorskip("ray")
    nodes = RayNodes()
    try:
        nodes.start(2, {})
        yield [*flags, "--ray-address", nodes.address], nodes.env
    finally:
        nodes.stop()


def stored_hashes(directory) -> set[str]:
    try:
        with sqlite3.connect(f"file:{directory / 'run.sqlite'}?mode=ro", uri=True) as db:
            return {h for (h,) in db.execute("SELECT hash FROM evaluations")}
    except sqlite3.Error:
        return set()


def journal_entries(journal, event: str, before: float = float("inf")) -> list[tuple[str, int]]:
    """(genome hash, worker pid) of the journal's ``event`` (start or end) lines up to ``before``, in order."""
    if not journal.exists():
        return []
    lines = (line.split() for line in journal.read_text().splitlines())
    return [(f[2], int(f[3])) for f in lines if f[1] == event and float(f[0]) <= before]


def ended(journal, before: float = float("inf")) -> list[str]:
    return [genome_hash for genome_hash, _ in journal_entries(journal, "end", before)]


def kill_when(victim, directory, journal, stored: int) -> float:
    """SIGKILL the search and its workers once ``stored`` evaluations are committed and no finished one is
    still being handed over (so that each kill is at a moment where losing work would be starlab's fault)."""
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
        hashes = stored_hashes(directory)
        if len(hashes) >= stored and set(ended(journal)) <= hashes:
            break
        time.sleep(0.01)
    moment = time.time()
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    return moment


@pytest.mark.parametrize("executor", ["local", "process", "ray"])
def test_sigkill_at_three_random_moments_loses_no_finished_evaluation(tmp_path, executor):
    killed, journal = tmp_path / "killed", tmp_path / "journal"
    with command_line_on(executor) as (flags, env):
        whole = reference_run(tmp_path / "whole")
        moments = sorted(random.Random(executor).sample(range(1, len(stored_hashes(whole)) - 1), 3))
        pauses = []  # from each kill to a moment the next attempt cannot have finished anything yet
        for attempt, stored in enumerate(moments):
            argv = [*STARLAB, *evolve_argv(killed, journal, flags, resume=attempt > 0)]
            victim = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                      start_new_session=True)  # fmt: skip
            moment = kill_when(victim, killed, journal, stored)
            assert set(ended(journal, moment)) <= stored_hashes(killed)  # every evaluation that had finished was kept
            if executor == "ray":  # let orphans finish (a task takes 0.1 s); the others' workers died with the group
                time.sleep(0.5)
                while len(ended(journal)) != len(ended(journal, time.time() - 0.5)):
                    time.sleep(0.1)
            pauses.append((moment, time.time() + 1.0))  # starting Python and torch alone takes longer than that
        last = [*STARLAB, *evolve_argv(killed, journal, flags, resume=True)]
        subprocess.run(last, check=True, capture_output=True, env=env)

    # Ray lets a task of a killed driver run to its end: finished, with nowhere to go
    orphans = [h for start, end in pauses for h in ended(journal, end)[len(ended(journal, start)) :]]
    runs = Counter(ended(journal)) - Counter(orphans)
    assert set(runs) == stored_hashes(killed) == stored_hashes(whole)
    assert max(runs.values()) == 1  # no finished evaluation was lost and run again
    assert executor == "ray" or not orphans  # killing the process group stops local and process workers
    with RunStore(killed) as k, RunStore(whole) as w:
        assert k.generations() == w.generations() and k.get_meta("finished")


def reference_run(directory):
    """The same search, never interrupted (in this process, without the delay: the results are the same)."""
    search = Search(directory, make_executor("local"), SearchConfig.from_preset("demo", **dict(CONFIG)))
    search.run()
    search.close()
    return directory


# ---- crashed workers ------------------------------------------------------------------------------------


def synthetic_jobs(journal, count: int, delay_s: float = 0.3) -> list[EvalJob]:
    genomes = {random_genome(3, seed).canonical().text() for seed in range(3 * count)}
    settings = {"delay_s": delay_s, "journal": str(journal)}
    return [EvalJob(text, "synthetic", 0, None, settings=settings) for text in sorted(genomes)[:count]]


def kill_worker_running(journal, choose, killed: set[int]) -> str:
    """Wait for an assessment that ``choose`` picks (by genome hash) to be running; SIGKILL its worker."""
    deadline = time.time() + 60
    while time.time() < deadline:
        over = set(journal_entries(journal, "end"))
        running = [
            (h, pid) for h, pid in journal_entries(journal, "start") if (h, pid) not in over and pid not in killed
        ]
        fresh = [(h, pid) for h, pid in running if choose(h)]
        for genome_hash, pid in fresh:
            killed.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
                return genome_hash
            except ProcessLookupError:  # stopped by its pool a moment ago
                continue
        time.sleep(0.01)
    raise AssertionError("no assessment started")


def test_crashed_workers_jobs_are_retried_a_doomed_one_fails_and_jobs_that_waited_never_fail(tmp_path):
    """Four pool breaks while jobs wait in the queue (the old executor failed those after three): one killed
    job runs again, and a job whose worker dies every time fails with its error after its two retries."""
    journal, executor = tmp_path / "journal", ProcessExecutor(2, max_retries=2)
    try:
        jobs = synthetic_jobs(journal, 6)
        doomed = Genome.parse(jobs[0].genome).hash()
        futures = [executor.submit(job) for job in jobs]
        killed: set[int] = set()
        for _ in range(3):
            kill_worker_running(journal, lambda h: h == doomed, killed)
        unlucky = kill_worker_running(journal, lambda h: h != doomed, killed)
        with pytest.raises(WorkerCrashed, match=r"died 3 times \(killed by signal 9\)"):
            futures[0].result(timeout=60)
        others = [future.result(timeout=60) for future in futures[1:]]
    finally:
        executor.close()
    assert [r["genome"] for r in others] == [job.genome for job in jobs[1:]]
    assert all(r["status"] == "ok" for r in others)
    runs = Counter(h for h, _ in journal_entries(journal, "start"))  # a job beside a dying one runs again too
    assert runs[doomed] == 3 and runs[unlucky] >= 2 and set(runs) == {Genome.parse(j.genome).hash() for j in jobs}


def test_resume_with_retry_failed_runs_the_failed_evaluations_again(tmp_path, capsys):
    run = tmp_path / "run"
    config = SearchConfig(protocol="synthetic", depth=3, population=4, generations=1)
    search = Search(run, make_executor("local"), config)
    search.run()
    search.close()
    with RunStore(run) as store:  # make two stored evaluations failed ones, as a crash would have left them
        victims = [e.hash for e in store.evaluations()[:2]]
        store.db.execute(f"UPDATE evaluations SET status = 'failed' WHERE hash IN ({','.join('?' * 2)})", victims)
    assert main(["evolve", "--resume", str(run)]) == 0 and "2 failed" in capsys.readouterr().out
    assert main(["evolve", "--resume", str(run), "--retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "(2 run now)" in out and "failed)" not in out
    with RunStore(run) as store:
        assert all(store.get_evaluation(h, "synthetic", 0).status == "ok" for h in victims)
    assert main(["evolve", "--out", str(tmp_path / "new"), "--retry-failed"]) == 2
    assert "--retry-failed goes with --resume" in capsys.readouterr().err


def test_evaluations_that_finished_when_ctrl_c_came_are_stored(tmp_path, monkeypatch):
    """Ctrl-C while waiting for results: whatever had finished by then is committed before the search stops."""
    from concurrent.futures import Future

    import starlab.evolve.evaluations as evaluations_module
    from starlab.evolve.executors import run_job

    submitted = []

    class Deferred:  # an executor whose jobs finish later, while the search waits
        def submit(self, job):
            submitted.append((Future(), job))
            return submitted[-1][0]

        def close(self):
            pass

    def finish_all_but_the_first_then_ctrl_c(futures):
        for future, job in submitted[1:]:
            future.set_result(run_job(job))
        raise KeyboardInterrupt
        yield

    genomes = [random_genome(4, seed).canonical() for seed in range(4)]
    search = Search(tmp_path / "run", Deferred(), SearchConfig(protocol="synthetic", depth=4, seeds=()))
    monkeypatch.setattr(evaluations_module, "as_completed", finish_all_but_the_first_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        search.evaluations.evaluate(genomes, "synthetic")
    stored = {e.hash for e in search.store.evaluations()}
    search.close()
    assert len(submitted) == 4 and stored == {g.hash() for g in genomes[1:]}  # the finished three, not the other


# ---- surrogate and ladder: replay repeats every decision -------------------------------------------------

ECONOMY = ("--protocol", "synthetic-noisy", "--ladder", "synthetic-noisy,synthetic", "--surrogate", "--depth", "4",
           "--population", "4", "--budget", "20", "--seed", "5")  # fmt: skip


def test_sigkill_and_resume_of_a_surrogate_ladder_search_ends_as_the_uninterrupted_one(tmp_path):
    """Killed twice mid-run and resumed, a search that screens with the surrogate and promotes up a ladder
    stores the same evaluations on every rung and the same generations (populations, fronts, surrogate and
    ladder statistics) as one that ran through. Only the killed attempts need processes of their own: the
    uninterrupted search and the last resume run in this one."""
    killed, journal, whole = tmp_path / "killed", tmp_path / "journal", tmp_path / "whole"
    settings = ["--protocol-setting", "delay_s=0.05", "--protocol-setting", f"journal={journal}"]
    assert main(["evolve", "--out", str(whole), *ECONOMY]) == 0
    for attempt, stored in enumerate((6, 13)):
        where = ["--resume", str(killed)] if attempt else ["--out", str(killed), *ECONOMY, *settings]
        victim = subprocess.Popen([*STARLAB, "evolve", *where], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)  # fmt: skip
        kill_when(victim, killed, journal, stored)
    assert main(["evolve", "--resume", str(killed)]) == 0
    assert max(Counter(ended(journal)).values()) == 1  # nothing finished was run again
    assert len({pid for _, pid in journal_entries(journal, "end")}) == 3  # each attempt did part of the work
    with RunStore(killed) as k, RunStore(whole) as w:
        for rung in ("synthetic-noisy", "synthetic"):
            assert {e.hash: e.quality for e in k.evaluations(rung)} == {e.hash: e.quality for e in w.evaluations(rung)}
        assert len(k.evaluations("synthetic-noisy")) == 20
        assert k.generations() == w.generations()
        assert any("surrogate" in g.stats for g in k.generations())


# ---- a retried evaluation continues from its checkpoint -------------------------------------------------

#: perplexity on fewer validation tokens than lm-tiny's 65,536: the same number, interrupted or not, sooner
LM_SETTINGS = {"steps": 120, "checkpoint_every": 20, "checkpoint_minutes": None, "max_eval_tokens": 4096}


def test_a_crashed_workers_language_model_evaluation_continues_from_its_checkpoint_bit_identical(tmp_path):
    """SIGKILL of the worker once the evaluation has checkpointed: the retry resumes from that checkpoint and
    ends with exactly the perplexity of the same evaluation run through (same worker settings, CPU)."""
    genome = random_genome(2, 4).canonical().text()
    job = EvalJob(genome, "lm-tiny", 0, None, settings=LM_SETTINGS, checkpoints=str(tmp_path / "killed"))
    executor = ProcessExecutor(1, max_retries=1)
    try:
        whole = executor.submit(dataclasses.replace(job, checkpoints=str(tmp_path / "whole"))).result(timeout=120)
        future = executor.submit(job)
        wait_for(lambda: (tmp_path / "killed" / "latest.json").exists() and executor.started[0], "a checkpoint")
        os.kill(executor.started[0], signal.SIGKILL)
        resumed = future.result(timeout=120)
    finally:
        executor.close()
    assert "resumed_from_step" not in whole["metrics"]
    assert resumed["metrics"]["resumed_from_step"] in range(20, 120, 20)
    assert resumed["quality"] == whole["quality"] and resumed["status"] == "ok"


def test_evolve_resume_continues_an_interrupted_evaluation_from_its_checkpoint_then_deletes_it(tmp_path):
    run = tmp_path / "run"
    settings = [f"--protocol-setting={key}={value}" for key, value in LM_SETTINGS.items() if value is not None]
    argv = [*STARLAB, "evolve", "--protocol", "lm-tiny", "--depth", "2", "--population", "4", "--generations", "0",
            "--seed", "1", *settings]  # fmt: skip
    victim = subprocess.Popen([*argv, "--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    wait_for(lambda: any((run / "checkpoints").glob("*/latest.json")), "a checkpoint", timeout_s=120)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert main(["evolve", "--resume", str(run)]) == 0  # in this process: nothing kills the resumed run
    with RunStore(run) as store:
        evaluations = store.evaluations("lm-tiny")
    assert all(e.status == "ok" for e in evaluations) and len(evaluations) >= 4
    assert any(e.metrics.get("resumed_from_step", 0) >= 20 for e in evaluations)
    assert not any((run / "checkpoints").iterdir())  # finished evaluations leave no checkpoints behind


# ---- a resume runs as the run was started; a file error is the run's fault, not the genome's ----------------


def forget_after_first_generation(run) -> None:
    """As if the run had been killed while assessing its second generation: only the first one's stored."""
    with sqlite3.connect(run / "run.sqlite") as db:
        (told,) = db.execute("SELECT population FROM generations WHERE generation = 0").fetchone()
        db.execute("DELETE FROM evaluations WHERE id > ?", (len(json.loads(told)),))
        db.execute("DELETE FROM generations WHERE generation > 0")
        db.execute("DELETE FROM meta WHERE key = 'finished'")


def workers_of_second_generation(run) -> set[int]:
    with RunStore(run) as store:
        return {int(e.worker.rsplit(":", 1)[1]) for e in store.evaluations()[4:]}


def test_a_plain_resume_runs_where_the_run_was_started_and_a_flag_given_replaces_that(tmp_path, capsys):
    """``--executor process --workers 2`` is stored with the run: resumed without flags, the evaluations run in
    worker processes (they ran in the main process); ``--executor local`` then replaces it, with a note."""
    run = tmp_path / "run"
    flags = ["--executor", "process", "--workers", "2", "--threads", "1"]
    assert main(["evolve", "--out", str(run), *SEARCH, *flags]) == 0
    forget_after_first_generation(run)
    capsys.readouterr()
    assert main(["evolve", "--resume", str(run)]) == 0
    assert "note" not in capsys.readouterr().err
    assert os.getpid() not in workers_of_second_generation(run)
    forget_after_first_generation(run)
    assert main(["evolve", "--resume", str(run), "--executor", "local"]) == 0
    assert "resuming with --executor 'local' (the run's was 'process')" in capsys.readouterr().err
    assert workers_of_second_generation(run) == {os.getpid()}
    forget_after_first_generation(run)
    assert main(["evolve", "--resume", str(run)]) == 0  # the replaced setting was stored
    assert workers_of_second_generation(run) == {os.getpid()} and "note" not in capsys.readouterr().err


@contextmanager
def small_disk(tmp_path, size: str):
    """A tmpfs of ``size`` at ``tmp_path / "disk"`` (skips where this process may not mount one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_is_the_runs_fault_and_a_resume_after_freeing_space_runs_the_evaluation(tmp_path, capsys):
    """A real full disk: the first evaluation's trained model cannot be written. It was stored 'failed' (the
    genome blamed, the front changed) and a resume kept it failed."""
    with small_disk(tmp_path, "160k") as disk:
        run = disk / "run"
        argv = ["--protocol", "lm-tiny", "--depth", "2", "--population", "4", "--generations", "0", "--keep-weights",
                "all", "--protocol-setting", "max_eval_tokens=4096"]  # fmt: skip
        assert main(["evolve", "--out", str(run), *argv]) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert "No space left on device" in last and "nothing was stored for it" in last
        with RunStore(run) as store:
            assert store.evaluations() == []
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)  # space freed
        assert main(["evolve", "--resume", str(run)]) == 0
        with RunStore(run) as store:
            assert [e.status for e in store.evaluations()] == ["ok"] * 4
        assert len(list((run / "weights").iterdir())) == 4
