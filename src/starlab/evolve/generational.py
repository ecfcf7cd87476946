"""STAR's loop, generation by generation: assessment, pairing, recombination, mutation as pymoo ask/tell.

Each generation: ask the algorithm for candidates (with the surrogate, many more, of which a predictor keeps
the promising ones); cut them to what is left of the budget; evaluate them (pymoo's ``Evaluator`` on the
:class:`~starlab.evolve.problem.GenomeProblem`, whose assess function is :meth:`Generational.assess_genomes`:
every genome through the store-first :class:`~starlab.evolve.evaluations.Evaluations`, then the best promoted
up the ladder); tell the algorithm their qualities on one scale (:mod:`starlab.assess.ladder`); record the
generation (:class:`~starlab.evolve.recorder.GenerationRecorder`).

Resuming is *replay*: the algorithm is rebuilt from the run's seed and re-asked generation by generation, and
every evaluation the store already holds is served from it. pymoo's operators, promotion and screening draw
only from generators seeded by the run, and every decision reads the :class:`Archive` of what had been told by
then, so the replayed run passes through exactly the same states: a run that was killed and resumed ends with
the same populations as one that never stopped, and no finished evaluation is lost or run twice.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from pymoo.core.evaluator import Evaluator
from pymoo.core.population import Population
from pymoo.core.termination import NoTermination
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

from starlab.assess import Evaluation, Sizes, genome_sizes
from starlab.assess.ladder import rank_agreement
from starlab.evolve.algorithms import make_algorithm
from starlab.evolve.operators import GenomeSampling
from starlab.evolve.outcome import check_any_succeeded, check_not_all_failed
from starlab.evolve.parts import LoopParts
from starlab.evolve.surrogate import MIN_TRAINING, Surrogate, genome_features, screen
from starlab.genome import Genome
from starlab.status import Status


class Predicted(NamedTuple):
    """A candidate as the surrogate sees it: predicted quality, exact sizes."""

    quality: float
    params: int
    cache_bytes: int


class Generational:
    """The generational loop of one run, given its :class:`~starlab.evolve.parts.LoopParts` (this loop becomes
    the genome problem's assess function)."""

    def __init__(self, parts: LoopParts) -> None:
        self.config, self.problem, self.objectives = parts.config, parts.problem, parts.objectives
        self.archive, self.evaluations, self.recorder = parts.archive, parts.evaluations, parts.recorder
        self.problem.assess = self.assess_genomes
        self.protocol = self.config.search_protocol()
        self.width = parts.evaluations.width
        self.generation = 0
        self.promoted: dict[str, int] = {}  # this generation's promotions, per rung
        self.sizes: dict[str, Sizes] = {}  # exact sizes of genomes the surrogate has screened

    def evaluate(self, genomes: Sequence[Genome], protocol: str) -> list[Evaluation]:
        """Store-first evaluations of ``genomes``, told to the archive in the genomes' order (whatever order
        they finished in: replay repeats it)."""
        results = self.evaluations.evaluate(genomes, protocol)
        for evaluation in results:
            self.archive.add(evaluation)
        return results

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

    def run(self) -> None:
        """Generations until the budget or the generation count is spent, or nothing new can be bred."""
        config = self.config
        breed = config.breed_factor if config.surrogate else 1
        algorithm = make_algorithm(
            config.algorithm, self.problem, config.population, config.seed_genomes(), config.mutation_prob,
            config.crossover_at_slots, config.elites, config.weights, breed,
        )  # fmt: skip
        algorithm.setup(self.problem, termination=NoTermination(), seed=config.seed)
        self.offspring = algorithm.n_offsprings // breed  # assessed per generation
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
            if algorithm.pop is not None and len(algorithm.pop) and len(self.config.rungs()) > 1:
                algorithm.pop.set("F", self._values(algorithm.pop))  # the ladder's scale moved: re-read it
            algorithm.tell(infills=pop)
            self.recorder.record(generation, algorithm.pop, self._stats(predicted))
            check_not_all_failed(generation, self.archive.on(self._genomes(pop), 0))  # recorded: the report shows it
            check_any_succeeded(self.evaluations.store.evaluations(config.protocol), f"by generation {generation}")

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
        if len(self.config.rungs()) > 1:
            stats["correlations"] = self.archive.correlations()
        if predicted:
            measured = {e.hash: e.quality for e in self.archive.comparable()}
            hashes = [h for h in predicted if h in measured]
            stats["surrogate"] = rank_agreement([predicted[h] for h in hashes], [measured[h] for h in hashes])
        return stats
