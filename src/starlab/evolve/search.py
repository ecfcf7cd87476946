"""STAR's loop — assessment, pairing, recombination, mutation — as an ask/tell loop over a durable store.

Each generation: ask the algorithm for candidates (with the surrogate, many more, of which a predictor
keeps the promising ones); cut them to what is left of the budget; evaluate them (pymoo's ``Evaluator`` on
the :class:`GenomeProblem`, whose assess function serves every evaluation the store holds, submits the
rest to the executor and commits each result as it arrives, then promotes the best up the ladder); tell
the algorithm their qualities on one scale (:mod:`starlab.assess.ladder`); record the generation (its
population, Pareto front, hypervolume and what was spent).

Resuming is *replay*: the algorithm is rebuilt from the run's seed and re-asked generation by generation,
and every evaluation the store already holds is served from it. pymoo's operators, promotion and screening
draw only from generators seeded by the run, and every decision reads the :class:`Archive` of what had been
told by then, so the replayed run passes through exactly the same states: a run that was killed and resumed
ends with the same populations as one that never stopped, and no finished evaluation is lost or run twice.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, as_completed
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any, NamedTuple
from typing import Protocol as TypingProtocol

import numpy as np
from pymoo.core.evaluator import Evaluator
from pymoo.core.population import Population
from pymoo.core.termination import NoTermination
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

from starlab.assess import Evaluation, Objectives, Sizes, failed_evaluation, genome_sizes, pareto_front
from starlab.assess.ladder import rank_agreement
from starlab.errors import Setting, SettingError
from starlab.evolve.algorithms import make_algorithm
from starlab.evolve.archive import Archive
from starlab.evolve.config import SearchConfig
from starlab.evolve.execution import EXECUTION, Execution
from starlab.evolve.executors import EvalJob, Executor
from starlab.evolve.operators import GenomeSampling
from starlab.evolve.outcome import SearchSummary, StorageFault, check_any_succeeded, check_not_all_failed
from starlab.evolve.problem import GenomeProblem
from starlab.evolve.steady import run_steady
from starlab.evolve.surrogate import MIN_TRAINING, Surrogate, genome_features, screen
from starlab.evolve.weights import evaluation_name, has_weights, keep, prune
from starlab.genome import Genome
from starlab.status import Status
from starlab.store import Generation, RunLock, RunStore, StoreError, check_stored_config, load_run

#: the run directory's folder for the checkpoints of evaluations in progress (one folder per evaluation)
CHECKPOINTS = "checkpoints"


class Reporter(TypingProtocol):
    """Receives progress events (the CLI shows them with rich; tests pass nothing)."""

    def start(self, config: SearchConfig, total: int, done: int) -> None: ...

    def evaluated(self, evaluation: Evaluation, replayed: bool) -> None: ...

    def generation(self, generation: int, front: list[dict], hypervolume: float) -> None: ...


class Predicted(NamedTuple):
    """A candidate as the surrogate sees it: predicted quality, exact sizes."""

    quality: float
    params: int
    cache_bytes: int


class Search:
    """One run in ``directory``: create it from ``config``, or (``resume``) continue the run stored there.

    ``on_generation`` is called with each generation record once it is stored, by both loops (the synchronous
    one, replayed generations included, and the steady state): the command line hangs the live report and
    TensorBoard on it, since evolution does not import reporting."""

    def __init__(
        self,
        directory: str | Path,
        executor: Executor,
        config: SearchConfig | None = None,
        resume: bool = False,
        reporter: Reporter | None = None,
        retry_failed: bool = False,
        on_generation: Callable[[Generation], None] | None = None,
        execution: Execution | None = None,
    ) -> None:
        if retry_failed and not resume:
            raise SettingError("{0} goes with {1} (it runs a stored run's failed evaluations again)",
                               Setting("retry_failed"), Setting("resume"))  # fmt: skip
        with ExitStack() as undo:  # a refused run leaves the store closed and the lock free
            self.store = RunStore(directory, create=not resume)
            undo.callback(self.store.close)
            self.lock = RunLock(directory)
            undo.callback(self.lock.release)
            config = self._run_config(directory, config, resume)
            self.execution = self._run_execution(directory, execution)
            undo.pop_all()
        self.retried = self.store.remove_failed() if retry_failed else 0
        self.device, self.keep_weights = self.execution.device, self.execution.keep_weights
        self.config, self.executor, self.reporter = config, executor, reporter
        self.on_generation = on_generation
        self.rungs = config.rung_protocols()
        self.protocol, top = self.rungs[0], self.rungs[-1]
        self.width = config.width or self.protocol.width
        self.objectives = Objectives(config.objectives, self.protocol, config.depth, self.width, top.worst_quality)
        self.problem = GenomeProblem(config.depth, self.objectives, self.assess_genomes, min_depth=config.min_depth,
                                     backbone_genes=config.backbone_genes,
                                     operator_genes=config.operator_genes)  # fmt: skip
        self.archive = Archive(config.rungs(), top.worst_quality)
        self.new_evaluations, self.generation = 0, 0
        self.promoted: dict[str, int] = {}  # this generation's promotions, per rung
        self.sizes: dict[str, Sizes] = {}  # exact sizes of genomes the surrogate has screened

    def _run_config(self, directory: str | Path, config: SearchConfig | None, resume: bool) -> SearchConfig:
        """The stored config when resuming; otherwise ``config``, stored (a directory holding a run is refused)."""
        stored = self.store.get_meta("config")
        if resume:
            if stored is None:
                raise StoreError("run store in {0} has no search config; it is not a starlab search", directory)
            # keys and types before anything runs (later-added keys default): 'quality' for a list was refused
            # only by the report, after the resumed run had evaluated and stored new genomes
            config = SearchConfig.from_json(check_stored_config(stored, directory))
            self.store.check()  # every stored record readable before the replay writes anything
            return config
        if stored is not None:
            raise StoreError(
                "{0} already holds a run; use {1:=}{0} or another {2}", directory, Setting("resume"), Setting("out")
            )
        self.store.set_meta("config", config.to_json())
        return config

    def _run_execution(self, directory: str | Path, execution: Execution | None) -> Execution:
        """``execution``, stored with the run (a resume without it reads the stored one: nothing the run was
        started with is dropped, such as the weights it keeps or where it runs)."""
        if execution is None:
            execution = Execution.from_json(self.store.get_meta(EXECUTION), directory)
        self.store.set_meta(EXECUTION, execution.to_json())
        return execution

    # ---- evaluation ----------------------------------------------------------------------------------
    def evaluate(self, genomes: Sequence[Genome], protocol: str) -> list[Evaluation]:
        """Evaluations for ``genomes`` under ``protocol``: from the store, or run (in parallel) and stored."""
        results: list[Evaluation | None] = [None] * len(genomes)
        pending: dict[Future, list[int]] = {}
        submitted: dict[str, Future] = {}  # a genome twice in one batch is run once
        for index, genome in enumerate(genomes):
            stored = self.store.get_evaluation(genome.hash(), protocol, self.config.seed)
            if stored is not None:
                results[index] = stored
                if self.reporter:
                    self.reporter.evaluated(stored, replayed=True)
                continue
            if genome.hash() in submitted:  # still pending: one that finished inside submit is in the store
                pending[submitted[genome.hash()]].append(index)
                continue
            future = self.executor.submit(self._job(genome, protocol))
            submitted[genome.hash()], pending[future] = future, [index]
            if future.done():  # the local executor runs the job inside submit: store it before the next one
                self._store(genomes, protocol, future, pending.pop(future), results)
        try:
            for future in as_completed(list(pending)):
                self._store(genomes, protocol, future, pending.pop(future), results)
        except (KeyboardInterrupt, StorageFault):  # keep what finished meanwhile: resuming must not run it again
            with suppress(ValueError):  # the store itself may be what failed: then the first error is the news
                for future, indices in pending.items():
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._store(genomes, protocol, future, indices, results)
            raise
        for evaluation in results:  # in the genomes' order, whatever order they finished in: replay repeats it
            self.archive.add(evaluation)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]

    def _job(self, genome: Genome, protocol: str) -> EvalJob:
        settings = self.config.protocol_settings if protocol == self.config.protocol else {}
        return EvalJob(
            genome.canonical().text(), protocol, self.config.seed, self.width, self.device, self.config.data, settings,
            str(self._checkpoints(genome, protocol)),
        )  # fmt: skip

    def _checkpoints(self, genome: Genome, protocol: str) -> Path:
        """Where an evaluation checkpoints: named by what it is, so a retry of it (a Ray retry, a crashed
        worker's, or ``--resume`` after a crash) finds its checkpoints and continues from the newest."""
        name = evaluation_name(protocol, genome.hash(), self.config.seed)
        return (self.store.directory / CHECKPOINTS / name).resolve()

    def _store(self, genomes, protocol: str, future: Future, indices: list[int], results: list) -> None:
        """Commit a finished future's evaluation (the moment it is handed over) and fill in its slots."""
        evaluation = self.commit(genomes[indices[0]], protocol, future)
        for index in indices:
            results[index] = evaluation

    def commit(self, genome: Genome, protocol: str, future: Future) -> Evaluation:
        """Keep a finished future's trained model (:mod:`starlab.evolve.weights`), store its evaluation, then
        delete its checkpoints: they are needed again only if it failed (``--retry-failed`` continues them).

        A file error (a full disk, a run directory that cannot be written) stops the run with nothing stored
        for the evaluation, so that a resume runs it again: it is the run's fault, never the genome's."""
        evaluation = self._finished(genome, protocol, future)
        checkpoints = self._checkpoints(genome, protocol)
        if evaluation.status == Status.OK:
            try:
                keep(self.store.directory, checkpoints, self.keep_weights)
            except OSError as error:
                raise StorageFault.of(error, evaluation.genome, self.store.directory) from None
        self.store.add_evaluation(evaluation)
        self.new_evaluations += 1
        if evaluation.status != Status.FAILED:
            shutil.rmtree(checkpoints, ignore_errors=True)
        if self.reporter:
            self.reporter.evaluated(evaluation, replayed=False)
        return evaluation

    def _finished(self, genome: Genome, protocol: str, future: Future) -> Evaluation:
        """A finished future's evaluation; an exception becomes a 'failed' one with the worst quality, except a
        file error, which stops the run (:class:`~starlab.evolve.outcome.StorageFault`)."""
        error = future.exception()
        if error is None:
            return Evaluation.from_dict(future.result())
        if isinstance(error, OSError):
            raise StorageFault.of(error, genome.canonical().text(), self.store.directory)
        assessed_by = next(rung for rung in self.rungs if rung.name == protocol)
        return failed_evaluation(genome, assessed_by, self.config.seed, self.width, error)

    def assess_genomes(self, genomes: Sequence[Genome]) -> list[Evaluation]:
        """The problem's assess function: every genome on the bottom rung, the best promoted up the ladder,
        and their evaluations with qualities on one scale."""
        self.evaluate(genomes, self.config.protocol)
        self._climb(genomes)
        return self.archive.comparable(genomes)

    def _climb(self, genomes: Sequence[Genome]) -> None:
        """Promote the best ``1/eta`` of this batch's measured genomes from each rung to the next (at least
        one): non-dominated rank, then crowding distance, on that rung's quality and the exact sizes."""
        current = [g for g in {g.hash(): g for g in genomes}.values() if self._measured(g, 0)]
        for k, rung in enumerate(self.config.rungs()[1:], start=1):
            if not current:
                break
            below = self.archive.on(current, k - 1)
            chosen = self._best(current, self.objectives.values(below), max(1, len(current) // self.config.eta), k)
            self.promoted[rung] = self.promoted.get(rung, 0) + sum(not self.archive.has(g, k) for g in chosen)
            self.evaluate(chosen, rung)
            current = [g for g in chosen if self._measured(g, k)]

    def _measured(self, genome: Genome, rung: int) -> bool:
        return self.archive.on([genome], rung)[0].status == Status.OK

    def _best(self, genomes: Sequence[Genome], values: np.ndarray, n: int, stream: int) -> list[Genome]:
        """The ``n`` best of ``genomes`` by rank and crowding on ``values``, ties broken by a seeded draw."""
        candidates = Population.new("F", values, "index", np.arange(len(genomes)))
        best = RankAndCrowding().do(self.problem, candidates, n_survive=n, random_state=self._rng(stream))
        return [genomes[int(i)] for i in sorted(best.get("index"))]

    def _rng(self, stream: int) -> np.random.Generator:
        """A generator fixed by the run seed, the generation and what it is for (so replay draws the same)."""
        return np.random.default_rng([self.config.seed, self.generation, stream])

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self) -> SearchSummary:
        """Run the search to its end; :class:`~starlab.evolve.outcome.SearchFailed` if nothing succeeded."""
        # steady state: a new candidate whenever a worker is free
        summary = run_steady(self) if self.config.asynchronous else self._run_generations()
        check_any_succeeded(self.store.evaluations(self.config.protocol), "in the whole run")
        return summary

    def _run_generations(self) -> SearchSummary:
        start, config = time.perf_counter(), self.config
        breed = config.breed_factor if config.surrogate else 1
        algorithm = make_algorithm(
            config.algorithm, self.problem, config.population, config.seed_genomes(), config.mutation_prob,
            config.crossover_at_slots, config.elites, config.weights, breed,
        )  # fmt: skip
        algorithm.setup(self.problem, termination=NoTermination(), seed=config.seed)
        self.offspring = algorithm.n_offsprings // breed  # assessed per generation
        if self.reporter:
            self.reporter.start(config, config.total_evaluations(), self.store.count_evaluations())
        record = Generation(-1, [], [], 0.0)
        for generation in itertools.count():
            if (config.generations is not None and generation > config.generations) or self._remaining() == 0:
                break
            self.generation, self.promoted = generation, {}
            pop = algorithm.ask()
            pop, predicted = self._screen(pop if pop is not None else Population.empty(), generation)
            pop = self._within_budget(pop, algorithm)
            if len(pop) == 0:  # nothing new can be bred or drawn: the genome space is exhausted
                break
            Evaluator().eval(self.problem, pop)
            if algorithm.pop is not None and len(algorithm.pop) and len(self.rungs) > 1:
                algorithm.pop.set("F", self._values(algorithm.pop))  # the ladder's scale moved: re-read it
            algorithm.tell(infills=pop)
            record = self._record_generation(generation, algorithm.pop, self._stats(predicted))
            check_not_all_failed(generation, self.archive.on(self._genomes(pop), 0))  # recorded: the report shows it
            check_any_succeeded(self.store.evaluations(config.protocol), f"by generation {generation}")
        self.store.set_meta("finished", True)
        failed = sum(e.status == Status.FAILED for e in self.store.evaluations(config.protocol))
        promotions = {rung: len(self.store.evaluations(rung)) for rung in config.rungs()[1:]}
        return SearchSummary(
            self.store.directory, record.generation, len(self.store.evaluations(config.protocol)),
            self.new_evaluations, time.perf_counter() - start, record.front_members, record.hypervolume or 0.0,
            failed, promotions,
        )  # fmt: skip

    def _remaining(self) -> int | float:
        """Bottom-rung evaluations the budget still allows (as told so far, so that replay cuts alike)."""
        return float("inf") if self.config.budget is None else self.config.budget - self.archive.count(0)

    def _values(self, pop: Population) -> np.ndarray:
        return self.objectives.values(self.archive.comparable(self._genomes(pop)))

    def _genomes(self, pop: Population) -> list[Genome]:
        return [self.problem.decode(x) for x in pop.get("X")]

    def _within_budget(self, pop: Population, algorithm) -> Population:
        """The candidates the budget pays for: genomes told before are free; new ones are kept in the order
        bred until the budget is spent. When nothing new was bred (a converged population), as many fresh
        random genomes as a generation assesses are drawn instead, so the budget is still spent exactly; when
        none is left either, nothing (the search stops)."""
        remaining, new = self._remaining(), set()
        keep = []
        for genome in self._genomes(pop):
            fresh = not self.archive.has(genome) and genome.hash() not in new
            if fresh and len(new) < remaining:
                new.add(genome.hash())
            keep.append(not fresh or genome.hash() in new)
        pop = pop[np.array(keep, dtype=bool)] if len(pop) else pop
        if new or remaining == 0:
            return pop
        wanted = int(min(remaining, self.offspring))  # distinct draws: enough to hold that many untold ones
        drawn = GenomeSampling()._do(self.problem, self.archive.count() + wanted, random_state=self._rng(0))
        fresh = [x for x in drawn if not self.archive.has(self.problem.decode(x))][:wanted]
        return Population.merge(pop, Population.new("X", np.array(fresh))) if fresh else Population.empty()

    # ---- surrogate ---------------------------------------------------------------------------------------
    def _screen(self, pop: Population, generation: int) -> tuple[Population, dict[str, float]]:
        """With the surrogate on, the offspring it keeps (see :mod:`starlab.evolve.surrogate`) and their
        predicted qualities; otherwise (and for the initial population) the offspring as bred."""
        if not self.config.surrogate or generation == 0 or len(pop) <= self.offspring:
            return pop, {}
        told = self.archive.comparable()
        untold = np.array([not self.archive.has(g) for g in self._genomes(pop)], dtype=bool)
        pop = pop[untold] if untold.any() else pop  # a genome told before would be a free, known repeat
        genomes = self._genomes(pop)
        if len(told) < MIN_TRAINING or len(pop) <= self.offspring:
            return pop[: self.offspring], {}
        seed = int(np.random.SeedSequence([self.config.seed, generation]).generate_state(1)[0])
        features = np.array([genome_features(Genome.parse(e.genome), Sizes(e.params, e.cache_bytes)) for e in told])
        model = Surrogate(seed).fit(features, told)
        sizes = [self._sizes(g) for g in genomes]
        predicted = model.predict(np.array([genome_features(g, s) for g, s in zip(genomes, sizes, strict=True)]))
        rows = [Predicted(q, s.params, s.cache_bytes) for q, s in zip(predicted, sizes, strict=True)]
        kept = screen(self.objectives.values(rows), self.offspring, self.config.exploration, self._rng(1))
        return pop[kept], {genomes[i].hash(): predicted[i] for i in kept}

    def _sizes(self, genome: Genome) -> Sizes:
        if genome.hash() not in self.sizes:
            self.sizes[genome.hash()] = genome_sizes(genome, self.width, self.protocol.config)
        return self.sizes[genome.hash()]

    def _stats(self, predicted: dict[str, float]) -> dict[str, Any]:
        """What this generation spent and measured about the search itself (stored with the generation)."""
        counts = {rung: self.archive.count(k) for k, rung in enumerate(self.config.rungs())}
        stats: dict[str, Any] = {"evaluations": counts, "promoted": dict(self.promoted)}  # no times: replay repeats it
        if len(self.rungs) > 1:
            stats["correlations"] = self.archive.correlations()
        if predicted:
            measured = {e.hash: e.quality for e in self.archive.comparable()}
            hashes = [h for h in predicted if h in measured]
            stats["surrogate"] = rank_agreement([predicted[h] for h in hashes], [measured[h] for h in hashes])
        return stats

    def _record_generation(self, generation: int, pop, stats: dict[str, Any]) -> Generation:
        """Store the surviving population with its objective values, Pareto front, hypervolume and stats."""
        values = np.array(pop.get("F"), dtype=float)
        genomes = self._genomes(pop)
        members = [
            {
                "genome": g.canonical().text(),
                "hash": g.hash(),
                **dict(zip(self.objectives.names, v.tolist(), strict=True)),
            }
            for g, v in zip(genomes, values, strict=True)
        ]
        record = Generation(generation, members, pareto_front(values), self.objectives.hypervolume(values), stats)
        self.store.add_generation(record)
        if self.keep_weights == "front" and has_weights(self.store.directory):
            prune(self.store.directory, (member["hash"] for member in load_run(self.store.directory).front))
        if self.reporter:
            self.reporter.generation(generation, record.front_members, record.hypervolume)
        if self.on_generation:
            self.on_generation(record)
        return record

    def close(self) -> None:
        self.store.close()
        self.lock.release()
