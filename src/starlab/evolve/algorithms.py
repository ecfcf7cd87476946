"""Search algorithms, all on pymoo's machinery and all driven by our ask/tell loop.

* **NSGA-II** (default): pymoo's NSGA-II — binary tournaments on rank and crowding, (mu + lambda) survival by
  non-dominated sorting and crowding distance — with our genome operators.
* **GA**: single objective: it ranks the weighted sum of the objectives (equal weights unless given) with
  pymoo's single-objective tournament and survival, and replaces each generation except its ``elites`` (2)
  best parents: the paper's elitism 2. The problem's F stays the objective vector, so fronts and
  hypervolumes of a GA run mean what they mean for NSGA-II.
* **Random search** (a baseline): every generation is fresh random genomes; the population keeps the best
  by rank and crowding, so its front is the best of everything sampled.
* **Firefly**: a discrete adaptation of the firefly algorithm (ours, docs/decisions.md). Brightness is Pareto rank, then
  crowding distance. Each firefly moves toward every brighter one: a gene it does not share with the brighter
  firefly is copied from it with probability ``beta0 * exp(-gamma * r^2)``, ``r`` the normalised Hamming
  distance; then every gene is redrawn at random with probability ``alpha``. Moved fireflies join the swarm
  and rank-and-crowding survival keeps the brightest ``pop_size``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from pymoo.algorithms.base.genetic import GeneticAlgorithm
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.soo.nonconvex.ga import comp_by_cv_and_fitness
from pymoo.core.initialization import Initialization
from pymoo.core.population import Population
from pymoo.core.survival import Survival
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding

from starlab.evolve.operators import CanonicalDuplicates, GeneMutation, GenomeRepair, GenomeSampling, TwoPointCrossover
from starlab.evolve.problem import GenomeProblem
from starlab.genome import Genome

ALGORITHMS = ("nsga2", "ga", "firefly", "random")


class WeightedSum(Survival):
    """GA's scalarisation: survival by the weighted sum of the objectives, and the matching tournament."""

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__(filter_infeasible=False)
        self.weights = np.asarray(weights, dtype=float)

    def fitness(self, pop: Population) -> np.ndarray:
        return pop.get("F") @ self.weights

    def _do(self, problem, pop, n_survive=None, **kwargs):
        order = np.lexsort([self.fitness(pop), pop.get("cv")])  # as pymoo's FitnessSurvival, on the sum
        pop.set("rank", np.argsort(order))
        return pop[order[:n_survive]]

    def compare(self, pop: Population, P: np.ndarray, random_state=None, **kwargs) -> np.ndarray:
        """pymoo's single-objective tournament, seeing each individual's weighted sum as its F."""
        scalar = Population.new("F", self.fitness(pop)[:, None], "CV", pop.get("CV"))
        return comp_by_cv_and_fitness(scalar, P, random_state=random_state)


class ElitistGA(GeneticAlgorithm):
    """Generational GA on the weighted sum: ``pop_size - elites`` offspring replace all but the ``elites`` best."""

    def __init__(self, pop_size: int, weights: Sequence[float], elites: int = 2, **kwargs) -> None:
        weighted = WeightedSum(weights)
        super().__init__(
            pop_size=pop_size,
            n_offsprings=pop_size - elites,
            selection=TournamentSelection(func_comp=weighted.compare),
            survival=weighted,
            advance_after_initial_infill=True,
            **kwargs,
        )
        self.elites = elites

    def _advance(self, infills=None, **kwargs) -> None:
        elites = self.survival.do(self.problem, self.pop, n_survive=self.elites, random_state=self.random_state)
        self.pop = self.survival.do(
            self.problem, Population.merge(elites, infills), n_survive=self.pop_size, random_state=self.random_state
        )


class Firefly(GeneticAlgorithm):
    """Discrete multi-objective firefly algorithm (see the module docstring)."""

    def __init__(self, pop_size: int, beta0: float = 0.5, gamma: float = 2.0, alpha: float = 0.05, **kwargs) -> None:
        super().__init__(pop_size=pop_size, survival=RankAndCrowding(), advance_after_initial_infill=True, **kwargs)
        self.beta0, self.gamma, self.alpha = beta0, gamma, alpha
        self.mutation = GeneMutation(alpha)

    def _brightness_order(self) -> np.ndarray:
        """Indices of the population from brightest to dimmest (rank ascending, crowding descending)."""
        rank, crowding = self.pop.get("rank", "crowding")
        return np.lexsort((-np.nan_to_num(crowding, posinf=1e12), rank))

    def _infill(self) -> Population:
        """Every firefly moves once (``n_offsprings // pop_size`` times when more offspring are bred)."""
        X, rng = self.pop.get("X"), self.random_state
        order = self._brightness_order()
        moved = []
        for _, (position, i) in itertools.product(range(max(1, self.n_offsprings // self.pop_size)), enumerate(order)):
            x = X[i].copy()
            for j in order[:position]:  # every brighter firefly, brightest first
                r = np.mean(x != X[j])
                copy = (x != X[j]) & (rng.random(len(x)) < self.beta0 * np.exp(-self.gamma * r**2))
                x[copy] = X[j][copy]
            moved.append(x)
        off = self.mutation.do(self.problem, Population.new("X", np.array(moved)), random_state=rng)
        off = self.repair(self.problem, off, random_state=rng)
        return self.eliminate_duplicates.do(off, self.pop)

    def _advance(self, infills=None, **kwargs) -> None:
        merged = Population.merge(self.pop, infills) if infills is not None and len(infills) else self.pop
        self.pop = self.survival.do(self.problem, merged, n_survive=self.pop_size, random_state=self.random_state)


class RandomSearch(GeneticAlgorithm):
    """Uniformly random genomes every generation after the initial population (no variation);
    rank-and-crowding survival.

    The initial population is the seeded one every algorithm starts from (``sampling``: the seed genomes, then
    random ones), so that a comparison with random search differs only in what comes after it; later
    generations draw from ``uniform`` alone, so the seeds are not offered again.
    """

    def __init__(self, pop_size: int, **kwargs) -> None:
        super().__init__(pop_size=pop_size, survival=RankAndCrowding(), advance_after_initial_infill=True, **kwargs)
        self.uniform = Initialization(GenomeSampling(), self.repair, self.eliminate_duplicates)

    def _infill(self) -> Population:
        return self.uniform.do(self.problem, self.n_offsprings, algorithm=self, random_state=self.random_state)


def make_algorithm(
    name: str,
    problem: GenomeProblem,
    pop_size: int,
    seeds: Sequence[Genome] = (),
    mutation_prob: float = 0.1,
    crossover_at_slots: bool = True,
    elites: int = 2,
    weights: Sequence[float] = (),
    breed: int = 1,
) -> GeneticAlgorithm:
    """A pymoo algorithm with starlab's genome operators (not yet set up; the search calls ``setup``).

    ``weights`` are GA's objective weights (default: equal); the other algorithms are multi-objective.
    ``breed`` multiplies the offspring bred per generation (the surrogate keeps ``1/breed`` of them).
    """
    algorithm = _algorithm(name, problem, pop_size, seeds, mutation_prob, crossover_at_slots, elites, weights)
    algorithm.n_offsprings *= breed
    return algorithm


def _algorithm(
    name: str, problem: GenomeProblem, pop_size: int, seeds: Sequence[Genome], mutation_prob: float,
    crossover_at_slots: bool, elites: int, weights: Sequence[float],
) -> GeneticAlgorithm:  # fmt: skip
    common = {
        "sampling": GenomeSampling(seeds),
        "repair": GenomeRepair(),
        "eliminate_duplicates": CanonicalDuplicates(problem),
    }
    if name == "nsga2":
        return NSGA2(
            pop_size=pop_size,
            crossover=TwoPointCrossover(at_slots=crossover_at_slots),
            mutation=GeneMutation(mutation_prob),
            **common,
        )
    if name == "ga":
        return ElitistGA(
            pop_size,
            weights=weights or [1.0] * problem.n_obj,
            elites=elites,
            crossover=TwoPointCrossover(at_slots=crossover_at_slots),
            mutation=GeneMutation(mutation_prob),
            **common,
        )
    if name == "firefly":
        return Firefly(pop_size, **common)
    if name == "random":
        return RandomSearch(pop_size, **common)
    raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
