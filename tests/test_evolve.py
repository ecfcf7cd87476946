"""Evolution on a cheap synthetic objective over real genomes: quality of search, durability, executors."""

import dataclasses
import errno
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from pymoo.core.population import Population
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from starlab.assess import (
    CACHE_LENGTH,
    Objectives,
    SyntheticProtocol,
    genome_sizes,
    get_protocol,
    pareto_front,
    register_protocol,
    unregister_protocol,
)
from starlab.assess.objectives import SIZE_REFERENCE_CLASS
from starlab.evolve import Search, SearchConfig, make_executor
from starlab.genome import Genome, random_genome
from starlab.liv import LIVConfig, build_liv, class_ids, get_class
from starlab.store import RunStore, StoreError

SYNTHETIC = get_protocol("synthetic")
WIDTH = SYNTHETIC.width


def run_search(directory, executor="local", workers=1, **settings):
    config = SearchConfig(**{"protocol": "synthetic", "depth": 3, "population": 8, "generations": 4, **settings})
    search = Search(directory, make_executor(executor, workers=workers), config)
    try:
        return search.run()
    finally:
        search.executor.close()
        search.close()


def final_population(directory):
    with RunStore(directory) as store:
        return store.generations()[-1].population


@pytest.fixture
def registered():
    """Register protocols for one test only: ``registered(protocol)``; all are removed afterwards."""
    names = []

    def register(protocol):
        names.append(register_protocol(protocol).name)
        return protocol

    yield register
    for name in names:
        unregister_protocol(name)


# ---- the true front of (quality, cache) at depth 3, by enumeration ---------------------------------------


def protocol_quality(genome):
    """The synthetic protocol's quality of ``genome``, asked of the protocol itself."""
    return SYNTHETIC.run(genome, WIDTH, seed=0, device=None).quality


def feature_sharing_genome(classes, consumers):
    """The genome whose ``consumers`` reuse the features of the first earlier non-consumer of their signature."""
    signatures = [get_class(c).feature_signature for c in classes]
    leaders = [
        next(j for j in range(i) if signatures[j] == signatures[i] and not consumers[j]) if consumer else i
        for i, consumer in enumerate(consumers)
    ]
    return Genome.from_slots([
        (cls, 1, 1, leader + 1, 2 if leader != i or i in leaders[i + 1 :] else 1)
        for i, (cls, leader) in enumerate(zip(classes, leaders, strict=True))
    ])  # fmt: skip


def cache_table():
    """Cache of each class as a full layer and as a feature-reusing layer (cache is additive per slot)."""
    return {c: (build_liv(c, WIDTH).cache_bytes(CACHE_LENGTH),
                build_liv(c, WIDTH, reuse_features=True).cache_bytes(CACHE_LENGTH))
            for c in class_ids()}  # fmt: skip


def true_front_points(depth=3):
    """(quality, cache / reference) of every genome that could be Pareto-optimal.

    Featurizer sharing never lowers cache and always costs quality, so only feature-group sharing patterns
    matter: a set of consumer slots is feasible when each has an earlier non-consumer with its signature.
    """
    table, points = cache_table(), []
    reference = depth * table[SIZE_REFERENCE_CLASS][0]
    for classes in itertools.product(class_ids(), repeat=depth):
        signatures = [get_class(c).feature_signature for c in classes]
        for consumers in itertools.product((False, True), repeat=depth):
            feasible = all(
                not consumer or (signatures[i] is not None and any(
                    signatures[j] == signatures[i] and not consumers[j] for j in range(i)))
                for i, consumer in enumerate(consumers)
            )  # fmt: skip
            if feasible:
                cache = sum(table[c][int(k)] for c, k in zip(classes, consumers, strict=True))
                points.append((protocol_quality(feature_sharing_genome(classes, consumers)), cache / reference))
    points = np.array(points)
    return points[NonDominatedSorting().do(points, only_non_dominated_front=True)]


def test_cache_table_is_exact():
    table = cache_table()
    for seed in range(20):
        genome = random_genome(3, seed)
        sources = genome.feature_sources()
        expected = sum(table[s.cls][int(src is not None and src != i)] for i, (s, src) in enumerate(
            zip(genome.slots, sources, strict=True)))  # fmt: skip
        assert genome_sizes(genome, WIDTH, LIVConfig()).cache_bytes == expected


def test_feature_sharing_genomes_share_what_the_front_enumeration_assumes():
    classes, consumers = (1, 2, 1), (False, False, True)  # slot 3 (SA-1) reuses slot 1's K/V
    genome = feature_sharing_genome(classes, consumers)
    assert genome.feature_sources() == [0, None, 0]
    table = cache_table()
    assert genome_sizes(genome, WIDTH, LIVConfig()).cache_bytes == table[1][0] + table[2][0] + table[1][1]


def test_nsga2_reaches_95_percent_of_the_true_front_hypervolume(tmp_path):
    front = true_front_points()
    reference_point = np.array([1.0, 2.0])
    best = HV(ref_point=reference_point)(front)
    summary = run_search(tmp_path / "run", objectives=("quality", "cache"), population=16, generations=18, seed=1)
    reached = HV(ref_point=reference_point)(
        np.array([[m["quality"], m["cache"]] for m in final_population(tmp_path / "run")])
    )
    assert reached >= 0.95 * best, (reached, best)
    assert summary.evaluations <= 16 * 19


def test_ga_improves_its_weighted_objective_with_elitism(tmp_path):
    run_search(tmp_path / "run", algorithm="ga", objectives=("quality", "cache"), population=10, generations=8)
    with RunStore(tmp_path / "run") as store:
        best = [min(m["quality"] + m["cache"] for m in g.population) for g in store.generations()]
    assert best[-1] < best[0]
    assert all(b <= a for a, b in itertools.pairwise(best))  # the elites never get lost


def test_firefly_improves_over_its_initial_population(tmp_path):
    run_search(tmp_path / "run", algorithm="firefly", objectives=("quality", "cache"), population=10, generations=8)
    with RunStore(tmp_path / "run") as store:
        hypervolumes = [g.hypervolume for g in store.generations()]
    assert hypervolumes[-1] > hypervolumes[0]
    assert all(b >= a for a, b in itertools.pairwise(hypervolumes))  # rank-and-crowding survival is elitist


def test_same_seed_same_run_other_seed_other_run_and_no_evaluation_twice(tmp_path):
    a, b, _ = (run_search(tmp_path / name, seed=seed) for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    assert final_population(tmp_path / "a") == final_population(tmp_path / "b")
    assert a.evaluations == b.evaluations
    with RunStore(tmp_path / "a") as first, RunStore(tmp_path / "c") as other:
        assert {e.hash for e in first.evaluations()} != {e.hash for e in other.evaluations()}
        assert first.generations()[0].population != other.generations()[0].population
    with sqlite3.connect(tmp_path / "a" / "run.sqlite") as db:
        keys = db.execute("SELECT hash, protocol, seed FROM evaluations").fetchall()
    assert len(keys) == len(set(keys)) == a.evaluations


def test_resume_of_a_finished_run_replays_it_without_running_anything(tmp_path):
    first = run_search(tmp_path / "run", seed=3)
    with RunStore(tmp_path / "run") as store:
        before = store.generations()
    search = Search(tmp_path / "run", make_executor("local"), resume=True)
    summary = search.run()
    search.close()
    assert summary.new_evaluations == 0 and summary.evaluations == first.evaluations
    assert summary.generations == first.generations == 4  # the loop ran through every generation again
    assert summary.front == first.front and summary.hypervolume == first.hypervolume
    with RunStore(tmp_path / "run") as store:
        assert [(g.population, g.front, g.hypervolume) for g in store.generations()] == [
            (g.population, g.front, g.hypervolume) for g in before
        ]


def test_each_generation_stores_its_pareto_front_and_hypervolume(tmp_path):
    run_search(tmp_path / "run", objectives=("quality", "cache"))
    objectives = Objectives(("quality", "cache"), SYNTHETIC, depth=3, width=WIDTH)
    with RunStore(tmp_path / "run") as store:
        generations = store.generations()
    assert [g.generation for g in generations] == [0, 1, 2, 3, 4]
    for g in generations:
        values = np.array([[m["quality"], m["cache"]] for m in g.population])
        assert g.front == pareto_front(values) and len(g.front) >= 1
        dominated = set(range(len(values))) - set(g.front)
        assert all(any((values[j] <= values[i]).all() and (values[j] < values[i]).any() for j in g.front)
                   for i in dominated)  # fmt: skip
        assert g.hypervolume == pytest.approx(objectives.hypervolume(values))


def test_process_executor_gives_the_same_results_as_local(tmp_path):
    run_search(tmp_path / "local", seed=5)
    run_search(tmp_path / "process", executor="process", workers=2, seed=5)
    assert final_population(tmp_path / "local") == final_population(tmp_path / "process")


def test_ray_executor_gives_the_same_results_as_local(tmp_path):
    pytest.importorskip("ray")
    run_search(tmp_path / "local", seed=5, generations=2)
    run_search(tmp_path / "ray", executor="ray", workers=2, seed=5, generations=2)
    assert final_population(tmp_path / "local") == final_population(tmp_path / "ray")


def test_bad_run_directories_and_configs_are_one_line_errors(tmp_path):
    with pytest.raises(StoreError, match="no starlab run in"):
        Search(tmp_path / "missing", make_executor("local"), resume=True)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="unreadable or corrupt"):
        Search(corrupt, make_executor("local"), resume=True)
    run_search(tmp_path / "done")
    with pytest.raises(StoreError, match="already holds a run"):
        run_search(tmp_path / "done")
    for bad, message in [
        ({"algorithm": "pso"}, "algorithm = 'pso' must be one of nsga2, ga, firefly"),
        ({"objectives": ("quality", "latency")}, "objectives must be distinct names"),
        ({"protocol": "nope"}, "unknown protocol 'nope'"),
        ({"population": 2}, "population = 2 must be an integer in 4..4096"),
        ({"population": 10**9}, "population = 1000000000 must be an integer in 4..4096"),
        ({"depth": 10**6}, "depth = 1000000 must be an integer in 1..256"),
        ({"width": 200_000}, "the largest depth-4 genome at width 200000 .* could need up to .* TB to train"),
        ({"budget": 0}, "budget = 0 must be an integer in 1..1000000"),
        ({"asynchronous": True, "surrogate": True}, "asynchronous breeds one candidate at a time"),
        ({"seeds": "zzz"}, "zzz"),
        ({"seed": -1}, "seed = -1 must be a non-negative integer"),
        ({"population": "8"}, "population = '8' must be int"),
        ({"objectives": 1}, "objectives = 1 must be str or list or tuple"),
        ({"protocol_settings": ["size"]}, "protocol_settings = \\['size'\\] must be dict"),
        ({"width": True}, "width = True must be int or null"),
        ({"width": 7}, "width must be a positive multiple of 8, got 7"),
        (
            {"seeds": ("transformer++",), "depth": 3},
            "seed genome transformer\\+\\+ cannot be built at depth 3 \\(preset depth must be an even integer",
        ),
        ({"seeds": ("11111-91111",), "depth": 3}, "seed genome 11111-91111 has 2 slots; this search uses depth 3"),
    ]:
        with pytest.raises(ValueError, match=message):
            SearchConfig(**{"protocol": "synthetic", **bad}).check()
    with pytest.raises(ValueError, match="unknown search settings: colour"):
        SearchConfig.from_json({"colour": "red"})
    config = SearchConfig(protocol="synthetic", seeds=("mamba",))
    assert SearchConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_seeds_enter_the_initial_population(tmp_path):
    run_search(tmp_path / "run", seeds=("11111-91111-11111",), generations=0)
    with RunStore(tmp_path / "run") as store:
        assert Genome.parse("11111-91111-11111").hash() in {e.hash for e in store.evaluations()}


def test_every_algorithm_starts_from_the_same_seeded_population(tmp_path):
    """Random search too: a comparison of algorithms must differ only in what comes after the start."""
    seed_genome = Genome.parse("11111-91111-11111")
    firsts = {}
    for algorithm in ("nsga2", "ga", "firefly", "random"):
        run_search(tmp_path / algorithm, algorithm=algorithm, seeds=(seed_genome.text(),), generations=2, seed=4)
        with RunStore(tmp_path / algorithm) as store:
            firsts[algorithm] = sorted(member["genome"] for member in store.generations()[0].population)
            later = [e.hash for e in store.evaluations()[8:]]
        assert seed_genome.hash() not in later  # offered once, in the initial population only
    assert firsts["random"] == firsts["nsga2"] == firsts["ga"] == firsts["firefly"]
    assert seed_genome.canonical().text() in firsts["random"]


def test_random_search_keeps_the_best_it_has_seen(tmp_path):
    summary = run_search(tmp_path / "run", algorithm="random", population=6, generations=10, budget=14)
    assert summary.evaluations == 14 and summary.generations < 10
    with RunStore(tmp_path / "run") as store:
        hypervolumes = [g.hypervolume for g in store.generations()]
    assert all(b >= a for a, b in itertools.pairwise(hypervolumes))  # the population keeps the best seen


def test_every_operator_returns_valid_genomes():
    from starlab.evolve.operators import GeneMutation, TwoPointCrossover
    from starlab.evolve.problem import GenomeProblem

    problem = GenomeProblem(depth=6)
    rng = np.random.default_rng(0)
    vectors = np.array([problem.encode(random_genome(6, seed)) for seed in range(40)])
    vectors[:, 2::5] = 2  # every slot asks for featurizer sharing: mostly incompatible
    pop = Population.new("X", vectors)
    children = TwoPointCrossover(prob=1.0).do(problem, pop, np.arange(40).reshape(20, 2), random_state=rng)
    mutants = GeneMutation(gene_prob=0.5).do(problem, children, random_state=rng)
    assert len(children) == len(mutants) == 40
    assert (children.get("X") != vectors).any()  # the operators did change genes
    for vector in [*children.get("X"), *mutants.get("X")]:
        genome = Genome.from_slots(vector.reshape(6, 5).tolist())  # strict parsing: raises if invalid
        assert genome.validate() is genome


# ---- failing loudly: committed one by one, all-failed generations, NaN qualities --------------------------


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class CountingStored(SyntheticProtocol):
    """Records how many evaluations the run's store held when each assessment started."""

    store: str = ""

    def run(self, *args):
        with sqlite3.connect(self.store) as db:
            stored = db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        return dataclasses.replace(super().run(*args), metrics={"stored_before": stored})


def test_the_local_executor_commits_each_evaluation_before_running_the_next(tmp_path, registered):
    registered(CountingStored(name="synthetic-counting", store=str(tmp_path / "run" / "run.sqlite")))
    run_search(tmp_path / "run", protocol="synthetic-counting", population=6, generations=1)
    with RunStore(tmp_path / "run") as store:
        seen = [e.metrics["stored_before"] for e in store.evaluations()]
    assert seen == list(range(len(seen))) and len(seen) >= 8  # every earlier evaluation was already stored


class Broken(SyntheticProtocol):
    def run(self, genome, *args):
        if self.name == "synthetic-broken" or genome.slots[0].cls == 1:
            raise RuntimeError(f"boom on {genome.text()}")
        return super().run(genome, *args)


def test_a_generation_that_fails_entirely_stops_the_search_with_the_first_error(tmp_path, registered, capsys):
    from starlab.cli import main
    from starlab.evolve.outcome import SearchFailed

    registered(Broken(name="synthetic-broken"))
    with pytest.raises(SearchFailed, match=r"every evaluation of generation 0 failed \(8 of 8\); the first: "
                                           r"RuntimeError: boom on"):  # fmt: skip
        run_search(tmp_path / "run", protocol="synthetic-broken")
    with RunStore(tmp_path / "run") as store:  # the failures are kept, with their errors
        assert [e.status for e in store.evaluations()] == ["failed"] * 8
    code = main(["evolve", "--out", str(tmp_path / "cli"), "--protocol", "synthetic-broken", "--population", "4"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # above it only the progress bar's final state
    assert code == 2 and "Traceback" not in err and err.count("starlab: error") == 1
    assert last.startswith("starlab: error: every evaluation of generation 0 failed (4 of 4); the first: RuntimeError")


def test_partial_failures_are_counted_and_the_search_goes_on(tmp_path, registered):
    registered(Broken(name="synthetic-sometimes"))  # fails only for genomes that start with SA-1
    summary = run_search(tmp_path / "run", protocol="synthetic-sometimes", seeds=("11111-91111-11111",))
    with RunStore(tmp_path / "run") as store:
        failed = [e for e in store.evaluations() if e.status == "failed"]
    assert summary.generations == 4 and summary.failed == len(failed) >= 1
    assert all(e.quality == 1.0 and "boom" in e.metrics["error"] for e in failed)


#: what the file-fault protocols do: after how many assessments the disk is full, and which run to delete
FAULTS: dict = {}


class DiskFull(SyntheticProtocol):
    """Counts its assessments; from the ``FAULTS["full_after"]``-th on, writing its files fails (ENOSPC) or, with
    ``FAULTS["delete"]``, that run's store is deleted meanwhile."""

    def run(self, genome, *args):
        FAULTS["assessed"] = FAULTS.get("assessed", 0) + 1
        if FAULTS.get("full_after") and FAULTS["assessed"] >= FAULTS["full_after"]:
            if "delete" in FAULTS:
                (FAULTS.pop("delete") / "run.sqlite").unlink()
            else:
                raise OSError(errno.ENOSPC, "No space left on device", "RUN/checkpoints/final/model.safetensors")
        return super().run(genome, *args)


@pytest.fixture
def faults(registered):
    registered(DiskFull(name="synthetic-full"))
    FAULTS.clear()
    yield FAULTS
    FAULTS.clear()


FAULTY = ["--protocol", "synthetic-full", "--population", "4", "--generations", "1", "--depth", "4"]


def test_a_full_disk_stops_the_run_blames_no_genome_and_a_resume_runs_that_evaluation(tmp_path, faults, capsys):
    """It stored the evaluation as failed with the worst quality (the front changed) and exited 0."""
    from starlab.cli import main

    run = tmp_path / "run"
    faults["full_after"] = 3
    assert main(["evolve", "--out", str(run), *FAULTY]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("starlab: error: the evaluation of ") and "No space left on device" in last
    assert "not a fault of the genome" in last and last.endswith(f"resume with `starlab evolve --resume {run}`")
    with RunStore(run) as store:
        assert [e.status for e in store.evaluations()] == ["ok", "ok"]  # nothing stored for the third
    faults["full_after"] = None  # space freed
    assert main(["evolve", "--resume", str(run)]) == 0
    with RunStore(run) as store:
        assert len(store.evaluations()) == 8 and all(e.status == "ok" for e in store.evaluations())


def test_weights_that_cannot_be_kept_stop_the_run_with_nothing_stored(tmp_path, monkeypatch, capsys):
    """Moving a finished evaluation's trained model into the run directory failed with a traceback."""
    import starlab.evolve.evaluations
    from starlab.cli import main

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "weights"))

    monkeypatch.setattr(starlab.evolve.evaluations, "keep", full)
    assert main(["evolve", "--out", str(tmp_path / "run"), "--protocol", "synthetic", "--population", "4"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "No space left on device" in err.strip().splitlines()[-1]
    with RunStore(tmp_path / "run") as store:
        assert store.evaluations() == []


def test_a_store_deleted_mid_run_stops_the_run_at_the_next_commit(tmp_path, faults, capsys):
    """It went on assessing every genome into the unlinked file, and exited 0."""
    from starlab.cli import main

    run = tmp_path / "run"
    faults.update(full_after=3, delete=run)
    assert main(["evolve", "--out", str(run), *FAULTY]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("starlab: error: run store ") and "was deleted or replaced while the run was using" in last
    assert faults["assessed"] == 3 and not (run / "run.sqlite").exists()


class NotANumber(SyntheticProtocol):
    def run(self, *args):
        return dataclasses.replace(super().run(*args), quality=float("nan"))


def test_a_nan_quality_is_stored_as_diverged_and_never_rerun(tmp_path, registered):
    from starlab.evolve.outcome import SearchFailed

    registered(NotANumber(name="synthetic-nan"))
    with pytest.raises(SearchFailed, match=r"no evaluation succeeded by generation 0 \(8 of 8 diverged\)"):
        run_search(tmp_path / "run", protocol="synthetic-nan", generations=1)
    with RunStore(tmp_path / "run") as store:
        evaluations = store.evaluations()
    assert len(evaluations) == 8 and all(
        e.status == "diverged" and e.quality == 1.0 and e.metrics["reported_quality"] == "nan" for e in evaluations
    )
    search = Search(tmp_path / "run", make_executor("local"), resume=True)
    with pytest.raises(SearchFailed):
        search.run()
    assert search.new_evaluations == 0
    search.close()


def test_a_search_where_nothing_succeeds_ends_in_one_line_and_its_report_says_so(tmp_path, registered, capsys):
    """Every evaluation diverged: the search ended with an IndexError (exit 1), and so did ``starlab report``."""
    from starlab.cli import main

    registered(NotANumber(name="synthetic-nan"))
    run = tmp_path / "run"
    assert main(["evolve", "--out", str(run), "--protocol", "synthetic-nan", "--population", "4"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "starlab: error: no evaluation succeeded by generation 0 (4 of 4 diverged), so the search found no genome"
    )
    assert main(["report", str(run)]) == 0
    assert "No evaluation succeeded, so the run found no genome." in capsys.readouterr().out
    assert "No evaluation succeeded" in (run / "report.html").read_text()


def test_a_sqlite_file_that_is_not_a_starlab_store_is_refused_untouched(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "run.sqlite") as db:
        db.execute("CREATE TABLE users (name TEXT)")
    before = (foreign / "run.sqlite").read_bytes()
    for resume in (True, False):
        config = None if resume else SearchConfig(protocol="synthetic", depth=3)
        with pytest.raises(StoreError, match=r"is not a starlab run store .*left untouched"):
            Search(foreign, make_executor("local"), config, resume=resume)
    assert (foreign / "run.sqlite").read_bytes() == before and sorted(p.name for p in foreign.iterdir()) == [
        "run.sqlite"
    ]


def test_a_run_being_run_refuses_a_second_writer_until_it_is_closed(tmp_path):
    run_search(tmp_path / "run", generations=1)
    first = Search(tmp_path / "run", make_executor("local"), resume=True)
    with pytest.raises(StoreError, match=rf"being run by another starlab process \(pid {os.getpid()}\)"):
        Search(tmp_path / "run", make_executor("local"), resume=True)
    script = "import sys; from starlab.evolve import Search, make_executor; "
    script += "Search(sys.argv[1], make_executor('local'), resume=True)"
    other = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run")], capture_output=True, text=True)
    assert other.returncode != 0 and "being run by another starlab process" in other.stderr
    first.close()
    second = Search(tmp_path / "run", make_executor("local"), resume=True)  # the lock is free again
    assert second.run().new_evaluations == 0
    second.close()


def test_resuming_names_the_flags_it_ignores(tmp_path, capsys):
    from starlab.cli import main

    run_search(tmp_path / "run", generations=1)
    before = final_population(tmp_path / "run")
    code = main(["evolve", "--resume", str(tmp_path / "run"), "--population", "99", "--seed", "0", "--depth", "3"])
    err = capsys.readouterr().err
    assert code == 0 and "ignoring --population 99 (the run's: 8)" in err
    assert "--seed" not in err and "--depth" not in err  # equal to the stored settings: nothing ignored
    assert final_population(tmp_path / "run") == before


@pytest.mark.parametrize("executor", ["local", "process", "ray"])
def test_ctrl_c_stops_in_one_line_and_leaves_a_consistent_store(tmp_path, executor):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it (workers included). Resuming an
    interrupted run is the SIGKILL test's subject; here the store must be intact and the run unfinished."""
    if executor == "ray":
        pytest.importorskip("ray")
    run = tmp_path / "run"
    _interrupted_search(run, executor, lambda pid: os.killpg(pid, signal.SIGINT))
    with sqlite3.connect(run / "run.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with RunStore(run) as store:
        evaluations = store.evaluations()  # every stored row reads back as a valid record
        assert 1 <= len(evaluations) <= 4 and not store.get_meta("finished")
        assert all(e.status == "ok" for e in evaluations)  # nothing stored as failed because it was stopped


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_sigterm_stops_a_search_as_ctrl_c_does(tmp_path, executor):
    """``kill PID`` (a scheduler's pre-emption) of the command alone: one line, exit 130, no process left. On
    Ray it aborted with exit 134 and a C++ stack dump (Ray's core worker took SIGTERM)."""
    if executor == "ray":
        pytest.importorskip("ray")
    run = tmp_path / "run"
    _interrupted_search(run, executor, lambda pid: os.kill(pid, signal.SIGTERM))
    with RunStore(run) as store:
        assert not store.get_meta("finished") and all(e.status == "ok" for e in store.evaluations())


def _interrupted_search(run, executor: str, interrupt) -> subprocess.Popen:
    """A search on ``executor`` interrupted by ``interrupt(pid)`` once it has stored an evaluation; checks it
    ended the way an interrupted command ends (exit 130, one line saying how to resume, nothing left behind)."""
    workers = [] if executor == "local" else ["--workers", "2"]
    argv = [sys.executable, "-m", "starlab.cli", "evolve", "--protocol", "tiny", "--population", "4",
            "--generations", "0", "--depth", "2", "--executor", executor, *workers]  # fmt: skip
    victim = subprocess.Popen([*argv, "--out", str(run)], stderr=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=_as_in_a_terminal)  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline and not _stored(run):
        time.sleep(0.05)
    interrupt(victim.pid)
    interrupted = time.time()
    _, err = victim.communicate(timeout=30)
    assert time.time() - interrupted < 10 and victim.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"starlab: interrupted; resume with `starlab evolve --resume {run}`"
    )
    assert _left_behind(victim.pid) == []  # workers (and Ray's processes) stopped with it
    return victim


def _as_in_a_terminal() -> None:
    """Ctrl-C reaches a command in a terminal even where this suite runs as a background job (``make test &``),
    whose children inherit SIGINT ignored and then never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _left_behind(session: int, patience_s: float = 10) -> list[str]:
    """The processes still alive in ``session`` once they had ``patience_s`` to exit."""
    deadline = time.time() + patience_s
    while True:
        alive = subprocess.run(["pgrep", "-s", str(session)], capture_output=True, text=True).stdout.split()
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)


def _stored(run) -> int:
    try:
        with sqlite3.connect(f"file:{run / 'run.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_tampered_stored_config_is_a_one_line_error_on_resume(tmp_path, capsys):
    from starlab.cli import main

    run_search(tmp_path / "run", generations=0)
    with RunStore(tmp_path / "run") as store:
        store.set_meta("config", {**store.get_meta("config"), "population": "8"})
    code = main(["evolve", "--resume", str(tmp_path / "run")])
    err = capsys.readouterr().err
    run = tmp_path / "run"
    assert (
        code == 2
        and err == f"starlab: error: run {run} is corrupt: its stored search config has population = '8', not int\n"
    )


def test_a_stored_config_of_the_wrong_type_is_refused_before_any_evaluation(tmp_path, capsys):
    """Objectives stored as the text 'quality' once resumed a generation, stored its evaluations, and only then
    was refused by the report (issue 30)."""
    from starlab.cli import main

    run_search(tmp_path / "run", generations=1, population=4)
    with RunStore(tmp_path / "run") as store:
        store.set_meta("config", {**store.get_meta("config"), "objectives": "quality", "generations": 3})
    before = _stored(tmp_path / "run")
    code = main(["evolve", "--resume", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "stored search config has objectives = 'quality', not list" in err
    assert _stored(tmp_path / "run") == before


@pytest.mark.parametrize(("stored", "shown"), [('"3"', "the text '3'"), ("3.0", "3.0"), ("null", "null")])
def test_a_schema_version_that_is_not_a_number_is_named_as_such(tmp_path, capsys, stored, shown):
    """A version stored as the text "3" read "has schema 3; this starlab reads schema 3" (issue 30)."""
    from starlab.cli import main

    run_search(tmp_path / "run", generations=0)
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (stored,))
    db.close()
    code = main(["report", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and f"is corrupt: its schema version is {shown}, not a whole number" in err, err
