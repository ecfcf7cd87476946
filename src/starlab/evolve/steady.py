"""Asynchronous steady state (``asynchronous=True``, ``--async``): a new candidate whenever a worker is free.

The synchronous loop waits at every generation boundary for its slowest evaluation; when evaluation times
differ (two to five times between genomes) workers idle there. Here the initial population (what the
synchronous loop's first ``ask`` gives: the seed genomes, then pymoo's sampling) is submitted first, as many
at a time as the executor runs at once; every time an evaluation finishes it is committed, told to the
archive (in the order evaluations finished) and a new candidate is bred from the archive as it is then:

* parents: the archive cut to ``population`` by the algorithm's own pymoo survival (NSGA-II's rank and
  crowding; GA's weighted sum), then the algorithm's own pymoo mating: its binary tournament,
  ``TwoPointCrossover``, ``GeneMutation`` and ``GenomeRepair``;
* a child that is any earlier candidate (told, running or waiting) is rejected and mated again, at most
  :data:`MATINGS` times; then a fresh random genome is drawn instead (random search always draws one); when
  none is left, breeding stops (the genome space is spent).

Breed ``i`` draws only from ``default_rng([seed, 0, i])``: it is a pure function of the run's seed, ``i``, the
first ``told`` evaluations in the order they finished and the candidates before it (:meth:`SteadyState.breed`).
Every candidate is logged (table ``candidates`` of ``run.sqlite``: index, genome, ``told``) before it is
submitted, and every evaluation is committed when it finishes, so a resumed run (``--resume``) submits first the
logged candidates that have no evaluation and breeds on from the next index: nothing finished is lost or run
again. A generation is recorded every ``population`` evaluations (the archive's survivors by then, their front
and hypervolume), so reports and hypervolume curves read an asynchronous run like a synchronous one.

What is reproduced exactly: with the local executor (one evaluation at a time) the whole run — candidates,
evaluations, their order, generations — is a function of the config, and a run killed and resumed ends equal
to one that never stopped. With parallel workers the order in which evaluations finish depends on timing, so
which candidates are bred does too; what stays exact is that every candidate can be bred again from the log and
the store (its ``told`` prefix), the budget is spent exactly, and resuming loses and repeats nothing.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mating import Mating
from pymoo.core.population import Population
from pymoo.core.termination import NoTermination

from starlab.assess import Evaluation
from starlab.evolve.algorithms import make_algorithm
from starlab.evolve.evaluations import salvage
from starlab.evolve.outcome import StorageFault, check_not_all_failed
from starlab.evolve.parts import LoopParts
from starlab.evolve.problem import GenomeProblem
from starlab.genome import Genome
from starlab.store import Generation, StoreError

#: Matings per breed before a child that is no earlier candidate is given up for a random genome.
MATINGS = 20
#: Random draws per breed before the genome space is searched for any genome not yet a candidate.
DRAWS = 100

CANDIDATES_TABLE = """
CREATE TABLE IF NOT EXISTS candidates (
    breed INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    genome TEXT NOT NULL,
    told INTEGER
)
"""


class Candidate(NamedTuple):
    """The ``index``-th candidate of a run; ``told``: evaluations it was bred from (``None``: initial population)."""

    index: int
    genome: Genome
    told: int | None


class CandidateLog:
    """Every candidate of an asynchronous run in the order it was made (table ``candidates`` of the store)."""

    def __init__(self, store) -> None:
        self.store = store
        self._sql(CANDIDATES_TABLE)

    def _sql(self, query: str, rows: list[tuple] | None = None) -> list[tuple]:
        db = self.store.db
        try:
            if rows is None:
                return db.execute(query).fetchall()
            # Not synced on its own (a commit costs a disk flush, and a freed worker waits for this one): the
            # next evaluation committed flushes it too, and until then a candidate lost with the machine
            # (a process killed loses nothing) is bred again identically from the same evaluations.
            db.execute("PRAGMA synchronous=NORMAL")
            try:
                with db:  # the candidates of one call are committed together
                    db.execute("BEGIN IMMEDIATE")
                    db.executemany(query, rows)
            finally:
                db.execute("PRAGMA synchronous=FULL")
            return []
        except sqlite3.Error as error:
            raise StoreError("run store {0} is unreadable or corrupt: {1}", self.store.path, error) from None

    def read(self) -> list[Candidate]:
        candidates = []
        for index, hash_, text, told in self._sql("SELECT breed, hash, genome, told FROM candidates ORDER BY breed"):
            try:
                genome = Genome.parse(text)
                if index != len(candidates) or genome.hash() != hash_ or not (told is None or 0 <= told):
                    raise ValueError("its index, hash or archive size is not what was stored")
            except (TypeError, ValueError) as error:
                raise StoreError("run store {0} is corrupt: candidate {1} cannot be read: {2}",
                                 self.store.path, index, str(error)[:200]) from None  # fmt: skip
            candidates.append(Candidate(index, genome, told))
        return candidates

    def add(self, candidates: list[Candidate]) -> None:
        rows = [(c.index, c.genome.hash(), c.genome.canonical().text(), c.told) for c in candidates]
        self._sql("INSERT INTO candidates VALUES (?, ?, ?, ?)", rows)


class _Earlier(DuplicateElimination):
    """pymoo's duplicate elimination against every earlier candidate of the run (by canonical hash)."""

    def __init__(self, problem: GenomeProblem, earlier: set[str]) -> None:
        super().__init__()
        self.problem, self.earlier = problem, earlier

    def _do(self, pop, other, is_duplicate: np.ndarray) -> np.ndarray:
        seen = set(self.earlier)
        for index, individual in enumerate(pop):
            key = self.problem.decode(individual.X).hash()
            is_duplicate[index] = key in seen
            seen.add(key)
        return is_duplicate


def parallelism(executor) -> int:
    """How many evaluations ``executor`` runs at once: its workers (process), the most tasks the cluster's
    CPUs and GPUs hold at once (Ray), one (local, or anything that does not say)."""
    workers = getattr(executor, "workers", None)
    if isinstance(workers, int) and workers >= 1:
        return workers
    ray = getattr(executor, "ray", None)
    if ray is not None:
        resources = ray.cluster_resources()
        fits = [resources.get("CPU", 1) // max(executor.threads, 1)]
        if executor.gpus:
            fits.append(resources.get("GPU", 0) // executor.gpus)
        return max(1, int(min(fits)))
    return 1


class SteadyState:
    """The asynchronous loop of one run, given its :class:`~starlab.evolve.parts.LoopParts` (the evaluations'
    store holds the candidate log)."""

    def __init__(self, parts: LoopParts) -> None:
        self.config, self.problem, self.objectives = parts.config, parts.problem, parts.objectives
        self.archive, self.evaluations, self.recorder = parts.archive, parts.evaluations, parts.recorder
        config, self.protocol = parts.config, parts.config.protocol
        self.algorithm = make_algorithm(
            config.algorithm, self.problem, config.population, config.seed_genomes(), config.mutation_prob,
            config.crossover_at_slots, config.elites, config.weights,
        )  # fmt: skip
        self.algorithm.setup(self.problem, termination=NoTermination(), seed=config.seed)
        self.total = config.total_evaluations()
        self.workers = parallelism(parts.evaluations.executor)
        self.log = CandidateLog(parts.evaluations.store)
        self.candidates: list[Candidate] = []
        self.hashes: list[str] = []  # the candidates' genome hashes, in order
        self.told: list[Evaluation] = []  # the search protocol's evaluations in the order they finished
        self.X: list[np.ndarray] = []
        self.F: list[np.ndarray] = []
        self.exhausted = False
        self.due: list[int] = []  # archive sizes that complete a generation not yet recorded

    # ---- state -------------------------------------------------------------------------------------------
    def load(self) -> None:
        """The stored evaluations (in the order committed) and the candidate log; a new run logs its initial
        population (the synchronous loop's first ``ask``, cut to the budget)."""
        for evaluation in self.evaluations.store.evaluations(self.protocol):
            self._tell(evaluation)
        self.candidates = self.log.read()
        if not self.candidates:
            initial = [self.problem.decode(x) for x in self.algorithm.ask().get("X")][: self.total]
            self.candidates = [Candidate(i, genome.canonical(), None) for i, genome in enumerate(initial)]
            self.log.add(self.candidates)
        self.hashes = [c.genome.hash() for c in self.candidates]

    def _tell(self, evaluation: Evaluation) -> None:
        self.archive.add(evaluation)
        self.told.append(evaluation)
        self.X.append(self.problem.encode(Genome.parse(evaluation.genome)))
        self.F.append(self.objectives.values([evaluation])[0])

    def _population(self, told: int) -> Population:
        """The first ``told`` evaluations as a pymoo population (gene vectors, objective values, feasible)."""
        return Population.new("X", np.array(self.X[:told]), "F", np.array(self.F[:told]), "CV", np.zeros((told, 1)))

    def _survivors(self, told: int, rng: np.random.Generator) -> Population:
        pop = self._population(told)
        return self.algorithm.survival.do(
            self.problem, pop, n_survive=min(self.config.population, told), random_state=rng
        )

    # ---- breeding ----------------------------------------------------------------------------------------
    def breed(self, index: int, told: int) -> Genome | None:
        """Candidate ``index`` bred from the first ``told`` evaluations, never one of the candidates before it
        (``None``: every genome of the space is one)."""
        rng = np.random.default_rng([self.config.seed, 0, index])
        earlier = set(self.hashes[:index])
        if self.config.algorithm != "random" and told > 0:
            parents = self._survivors(told, rng)
            mating = self.algorithm.mating
            fresh = Mating(mating.selection, mating.crossover, mating.mutation, repair=self.algorithm.repair,
                           eliminate_duplicates=_Earlier(self.problem, earlier), n_max_iterations=MATINGS)  # fmt: skip
            tournament = SimpleNamespace(
                tournament_type=getattr(self.algorithm, "tournament_type", None), random_state=rng
            )  # NSGA-II's tournament breaks ties with the algorithm's
            child = fresh.do(self.problem, parents, 1, random_state=rng, algorithm=tournament)
            if len(child):
                return self.problem.decode(child[0].X)
        return self._draw(rng, earlier)

    def _draw(self, rng: np.random.Generator, earlier: set[str]) -> Genome | None:
        for _ in range(DRAWS):
            genome = self.problem.random_genome(rng)
            if genome.hash() not in earlier:
                return genome
        for _ in range(DRAWS * (len(earlier) + 1)):  # a small space: as many draws as finding all of it takes
            genome = self.problem.random_genome(rng)
            if genome.hash() not in earlier:
                return genome
        return None

    def _next(self, running: int) -> Candidate | None:
        """A new candidate, logged, when the budget pays for one more besides those stored and running."""
        if self.exhausted or len(self.told) + running >= self.total:
            return None
        index, told = len(self.candidates), len(self.told)
        genome = self.breed(index, told)
        if genome is None:
            self.exhausted = True
            return None
        candidate = Candidate(index, genome.canonical(), told)
        self.log.add([candidate])  # before it is submitted: a resumed run submits it again, never breeds anew
        self.candidates.append(candidate)
        self.hashes.append(genome.hash())
        return candidate

    # ---- the loop ----------------------------------------------------------------------------------------
    def run(self) -> None:
        """Breed and evaluate until the budget is spent (or the genome space); resumed, continue the log."""
        self.load()
        if self.evaluations.reporter:
            for evaluation in self.told:  # a resumed run's progress starts where it stopped
                self.evaluations.reporter.evaluated(evaluation, replayed=True)
        self._record_missing()
        waiting = deque(c for c in self.candidates if not self.archive.has(c.genome))  # logged, not stored
        running: dict[Future, Candidate] = {}
        try:
            while True:
                self._fill(waiting, running)
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: running[f].index):
                    self._finished(running, future)
        except (KeyboardInterrupt, StorageFault):
            salvage(sorted(running, key=lambda f: running[f].index), lambda future: self._finished(running, future))
            raise
        if self.told and self._generation_of(len(self.told)) not in self._recorded():
            self._record(len(self.told))  # the genome space ran out before a whole generation

    def _fill(self, waiting: deque[Candidate], running: dict[Future, Candidate]) -> None:
        """Give every free worker a candidate (those logged but not stored first), then record the generations
        completed meanwhile (after the submissions: a freed worker does not wait for them)."""
        while len(running) < self.workers:
            candidate = waiting.popleft() if waiting else self._next(len(running))
            if candidate is None:
                break
            future = self.evaluations.submit(candidate.genome, self.protocol)
            running[future] = candidate
            if future.done():  # the local executor ran it inside submit: tell it before breeding on
                self._finished(running, future)
            self._record_due()
        self._record_due()

    def _finished(self, running: dict[Future, Candidate], future: Future) -> None:
        """Commit a finished evaluation and tell it (a generation it completes is recorded soon after)."""
        candidate = running[future]
        if not self.archive.has(candidate.genome):
            self._tell(self.evaluations.commit(candidate.genome, self.protocol, future))
            if len(self.told) % self.config.population == 0 or len(self.told) == self.total:
                self.due.append(len(self.told))
        del running[future]

    def _record_due(self) -> None:
        while self.due:
            self._record(self.due.pop(0))

    # ---- generations -------------------------------------------------------------------------------------
    def _generation_of(self, told: int) -> int:
        return -(-told // self.config.population) - 1

    def _recorded(self) -> set[int]:
        return {g.generation for g in self.evaluations.store.generations()}

    def _record_missing(self) -> None:
        """Generations a killed run had completed but not yet recorded (each one is a function of its prefix)."""
        recorded, population = self._recorded(), self.config.population
        ends = [*range(population, len(self.told) + 1, population)]
        if len(self.told) == self.total and self.total % population:
            ends.append(self.total)
        for told in ends:
            if self._generation_of(told) not in recorded:
                self._record(told)

    def _record(self, told: int) -> Generation:
        """Generation ``g`` at ``told`` evaluations: the survivors of the first ``told``, unless every evaluation
        since the previous generation failed (then the setup is broken: :class:`SearchFailed`)."""
        generation = self._generation_of(told)
        batch = self.told[generation * self.config.population : told]
        check_not_all_failed(generation, batch)
        survivors = self._survivors(told, np.random.default_rng([self.config.seed, 1, generation]))
        stats = {"evaluations": {self.protocol: told}, "promoted": {}}
        return self.recorder.record(generation, survivors, stats)
