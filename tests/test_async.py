"""Asynchronous steady state (``--async``): a new candidate whenever a worker is free, exact budgets, durable.

Concurrency is read from the synthetic protocol's journal (``<time> start|end <hash> <pid>`` per assessment,
in whichever process ran it): it shows how many evaluations were running at every moment, and how many
times each genome was really evaluated across kills and resumes.
"""

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

import starlab.evolve.steady as steady
from starlab import runtime
from starlab.assess import SyntheticProtocol, register_protocol, unregister_protocol
from starlab.evolve import Search, SearchConfig, make_executor
from starlab.evolve.executors import run_job
from starlab.evolve.outcome import SearchFailed
from starlab.store import RunStore


def config(**settings) -> SearchConfig:
    base = {"protocol": "synthetic", "depth": 3, "population": 6, "generations": None, "asynchronous": True}
    return SearchConfig(**{**base, **settings})


def run(directory, executor=None, **settings):
    search = Search(directory, executor or make_executor("local"), config(**settings))
    try:
        return search.run()
    finally:
        search.close()


def history(directory):
    """Everything a run decided, in order: candidates (with the archive size each was bred from), evaluations
    in the order they were committed, and generations."""
    with RunStore(directory) as store:
        candidates = store.db.execute("SELECT breed, genome, told FROM candidates ORDER BY breed").fetchall()
        evaluations = [(e.hash, e.quality, e.status) for e in store.evaluations()]
        generations = [(g.generation, g.population, g.front, g.hypervolume, g.stats) for g in store.generations()]
    return candidates, evaluations, generations


def journal_events(journal) -> list[tuple[float, str, str]]:
    lines = (line.split() for line in journal.read_text().splitlines())
    return sorted((float(f[0]), f[1], f[2]) for f in lines)


def longest_idle(journal, workers: int, after: float = 0.0) -> float:
    """The longest time any of ``workers`` stood idle, from the moment (``after``) all of them first ran to the
    last start (the tail, when the budget is spent, does not count)."""
    events = [e for e in journal_events(journal) if e[0] >= after]
    last = max(moment for moment, event, _ in events if event == "start")
    running, full, since, longest = 0, False, None, 0.0
    for moment, event, _ in events:
        if since is not None:
            longest = max(longest, min(moment, last) - since)
        running += 1 if event == "start" else -1
        full = full or running >= workers
        since = moment if full and running < workers and moment < last else None
    return longest if full else float("inf")


# ---- budgets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["nsga2", "ga", "random"])
def test_the_budget_is_exact_and_a_generation_is_recorded_every_population(tmp_path, algorithm):
    summary = run(tmp_path / "run", algorithm=algorithm, budget=13)
    candidates, evaluations, generations = history(tmp_path / "run")
    assert summary.evaluations == len(evaluations) == len(candidates) == 13
    assert len({h for h, _, _ in evaluations}) == 13  # never an architecture twice
    assert [(g, stats["evaluations"]["synthetic"]) for g, *_, stats in generations] == [(0, 6), (1, 12), (2, 13)]
    assert summary.generations == 2 and summary.hypervolume == generations[-1][3] > 0
    assert [told for _, _, told in candidates] == [None] * 6 + list(range(6, 13))  # bred as each one finished


def test_generations_cap_the_evaluations_and_a_spent_genome_space_stops_the_run(tmp_path):
    assert run(tmp_path / "capped", generations=2).evaluations == 18  # population * (generations + 1)
    spent = run(tmp_path / "spent", depth=1, population=4, budget=30)  # depth 1 holds 17 architectures
    assert spent.evaluations == 17 and len(history(tmp_path / "spent")[0]) == 17


def test_the_initial_population_is_the_synchronous_one(tmp_path):
    seeds = ("transformer++", "striped-mamba")
    run(tmp_path / "async", budget=6, depth=4, seeds=seeds)
    search = Search(
        tmp_path / "sync", make_executor("local"), config(budget=6, depth=4, seeds=seeds, asynchronous=False)
    )
    search.run()
    search.close()
    with RunStore(tmp_path / "async") as a, RunStore(tmp_path / "sync") as s:
        assert [e.hash for e in a.evaluations()] == [e.hash for e in s.evaluations()]


def test_every_evaluation_of_the_first_generation_failing_stops_the_search(tmp_path):
    @dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
    class Broken(SyntheticProtocol):
        name: str = "synthetic-broken"

        def run(self, *args, **kwargs):
            raise RuntimeError("no corpus")

    register_protocol(Broken(cost_s=0.0))
    try:
        with pytest.raises(SearchFailed, match=r"every evaluation of generation 0 failed.*no corpus"):
            run(tmp_path / "run", protocol="synthetic-broken", budget=20)
    finally:
        unregister_protocol("synthetic-broken")
    assert len(history(tmp_path / "run")[1]) == 6  # it stopped there, not after the budget


# ---- determinism and resuming (local: one at a time) -------------------------------------------------------


class InterruptAt:
    """The local executor, with Ctrl-C arriving instead of the ``n``-th job."""

    def __init__(self, n: int) -> None:
        self.local, self.n = make_executor("local"), n

    def submit(self, job):
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt
        return self.local.submit(job)

    def close(self):
        pass


def test_local_runs_are_deterministic_and_resume_exactly_where_they_stopped(tmp_path):
    settings = {"budget": 20, "seeds": ("11111-11111-11111",)}
    run(tmp_path / "a", **settings)
    run(tmp_path / "b", **settings)
    assert history(tmp_path / "a") == history(tmp_path / "b")
    stopped = tmp_path / "stopped"
    for n in (4, 6, 9):  # in the initial population, at its end, while breeding
        with pytest.raises(KeyboardInterrupt):
            run(stopped, InterruptAt(n), **settings) if n == 4 else resume(stopped, InterruptAt(n))
    summary = resume(stopped, make_executor("local"))
    assert history(stopped) == history(tmp_path / "a") and summary.evaluations == 20


def resume(directory, executor):
    search = Search(directory, executor, resume=True)
    try:
        return search.run()
    finally:
        search.close()


def test_evaluations_that_finished_when_ctrl_c_came_are_stored(tmp_path, monkeypatch):
    submitted: list[tuple[Future, object]] = []

    class Deferred:  # two workers whose jobs finish later, while the search waits
        workers = 2

        def submit(self, job):
            submitted.append((Future(), job))
            return submitted[-1][0]

        def close(self):
            pass

    def finish_the_second_then_ctrl_c(futures, return_when):
        submitted[1][0].set_result(run_job(submitted[1][1]))
        raise KeyboardInterrupt

    monkeypatch.setattr(steady, "wait", finish_the_second_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "run", Deferred(), budget=10)
    candidates, evaluations, _ = history(tmp_path / "run")
    assert len(submitted) == 2 and len(candidates) == 6  # the initial population is logged; two were running
    assert [h for h, _, _ in evaluations] == [run_job(submitted[1][1])["hash"]]


# ---- no idle workers ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Uneven(SyntheticProtocol):
    """The synthetic protocol taking 1 to 4 times ``delay_s``, by genome."""

    name: str = "synthetic-uneven"

    def run(self, genome, *args, **kwargs):
        delay = self.delay_s * (1 + int(genome.hash()[:8], 16) % 4)
        return SyntheticProtocol.run(dataclasses.replace(self, delay_s=delay), genome, *args, **kwargs)


class Threads:
    """Two evaluations at a time in threads of this process (which knows the registered ``Uneven``)."""

    workers = 2

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(self.workers)

    def submit(self, job):
        return self.pool.submit(run_job, job)

    def close(self):
        self.pool.shutdown()


def test_with_evaluation_times_differing_4x_no_worker_idles_at_a_generation_boundary(tmp_path):
    """A population of 5 on 2 workers, each evaluation 1-4 x 100 ms: the synchronous loop waits for the slowest
    of every generation; the asynchronous one gives a freed worker its next candidate at once (a worker idles
    for a commit and a breeding, milliseconds, never for as long as the shortest evaluation)."""
    register_protocol(Uneven(cost_s=0.0))
    idle = {}
    try:
        for asynchronous in (True, False):
            journal = tmp_path / f"journal-{asynchronous}"
            settings = {"delay_s": 0.1, "journal": str(journal)}
            executor = Threads()
            summary = run(tmp_path / f"run-{asynchronous}", executor, protocol="synthetic-uneven", population=5,
                          budget=15, protocol_settings=settings, asynchronous=asynchronous)  # fmt: skip
            executor.close()
            assert summary.evaluations == 15
            idle[asynchronous] = longest_idle(journal, 2)
    finally:
        unregister_protocol("synthetic-uneven")
    assert idle[True] < 0.1 and idle[False] > 0.2, idle  # seconds


def test_ray_tasks_run_two_at_a_time_and_the_budget_exactly(tmp_path):
    pytest.importorskip("ray")
    journal = tmp_path / "journal"
    settings = {"delay_s": 0.1, "journal": str(journal)}
    executor = make_executor("ray", workers=2)
    try:
        assert steady.parallelism(executor) == 2  # the local Ray's CPUs over one CPU per task
        summary = run(tmp_path / "run", executor, population=4, budget=9, protocol_settings=settings)
        # Ray's workers, like process workers, spin briefly (runtime.spin_briefly) and run one torch thread
        import ray

        def probe() -> tuple:  # in a worker that ran evaluations
            spins = __import__("starlab.runtime").runtime.BRIEF_SPINS
            return os.environ.get("GOMP_SPINCOUNT"), spins, __import__("torch").get_num_threads()

        assert ray.get(ray.remote(probe).options(num_cpus=1).remote()) == (str(runtime.SPIN_COUNT), True, 1)
    finally:
        executor.close()
    assert summary.evaluations == len(history(tmp_path / "run")[0]) == 9 and summary.generations == 2
    running, most = 0, 0
    for _, event, _ in journal_events(journal):
        running += 1 if event == "start" else -1
        most = max(most, running)
    assert most == 2 and len(ended(journal)) == 9


# ---- process workers: SIGKILL and --resume -----------------------------------------------------------------


def evolve_argv(directory, journal, resume=False):
    search = ["--out", str(directory), "--protocol", "synthetic", "--depth", "4", "--population", "5", "--seed", "3",
              "--async", "--budget", "12", "--protocol-setting", "delay_s=0.1", "--protocol-setting",
              f"journal={journal}"]  # fmt: skip
    where = ["--resume", str(directory)] if resume else search
    return [sys.executable, "-m", "starlab.cli", "evolve", *where, "--executor", "process", "--workers", "2"]


def read_only(directory, query: str) -> list[tuple]:
    try:
        with sqlite3.connect(f"file:{directory / 'run.sqlite'}?mode=ro", uri=True) as db:
            return db.execute(query).fetchall()
    except sqlite3.Error:  # not created yet
        return []


def stored_hashes(directory) -> set[str]:
    return {h for (h,) in read_only(directory, "SELECT hash FROM evaluations")}


def ended(journal) -> list[str]:
    return [h for _, event, h in journal_events(journal) if event == "end"] if journal.exists() else []


def test_sigkill_then_resume_on_process_workers_loses_and_repeats_nothing_and_no_worker_idles(tmp_path):
    """The command line on 2 process workers (a generation boundary every 5 evaluations) is killed with SIGKILL
    while breeding, two candidates running, then resumed: every finished evaluation was kept, each genome
    was evaluated to its end once, the budget is spent exactly, the resumed run never left a worker idle as
    long as an evaluation takes, and every bred candidate breeds again from the log and the store."""
    directory, journal = tmp_path / "run", tmp_path / "journal"
    victim = subprocess.Popen(evolve_argv(directory, journal), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and victim.poll() is None:  # nothing finished unstored, two candidates running
        hashes = stored_hashes(directory)
        logged = len(read_only(directory, "SELECT breed FROM candidates"))
        if len(hashes) >= 6 and set(ended(journal)) <= hashes and logged == len(hashes) + 2:
            break
        time.sleep(0.01)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    kept = stored_hashes(directory)
    assert set(ended(journal)) <= kept and 6 <= len(kept) < 12  # killed mid-run, nothing finished lost
    resumed = time.time()
    subprocess.run(evolve_argv(directory, journal, resume=True), check=True, capture_output=True)

    runs = Counter(ended(journal))
    candidates, evaluations, generations = history(directory)
    assert set(runs) == stored_hashes(directory) and len(runs) == len(evaluations) == len(candidates) == 12
    assert max(runs.values()) == 1  # no finished evaluation was lost and run again
    assert [g[0] for g in generations] == [0, 1, 2]
    assert longest_idle(journal, 2, after=resumed) < 0.1
    search = Search(directory, make_executor("local"), resume=True)
    try:
        assert search.store.get_meta("finished")
        state = steady.SteadyState(search.parts)
        state.load()
        for index, genome, told in candidates:  # a function of (seed, index, the first `told` evaluations)
            if told is not None:
                assert state.breed(index, told).canonical().text() == genome
    finally:
        search.close()
