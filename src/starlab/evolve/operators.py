"""Variation operators on genome vectors, as pymoo operators: sampling, crossover, mutation, repair, dedup.

Crossover and mutation repair what they produce, so every operator's output is a valid genome. Each draws
randomness only from the ``random_state`` pymoo passes in, so a search is a deterministic function of its seed
and the objective values it is told (which is what makes resuming by replay exact).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mutation import Mutation
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling

from starlab.evolve.problem import GenomeProblem
from starlab.genome import Genome, random_genome
from starlab.liv import class_ids


def repaired(problem: GenomeProblem, X: np.ndarray) -> np.ndarray:
    """Every row of ``X`` as the vector of a valid genome (clipped to range, incompatible sharing set to 1)."""
    return np.array([problem.encode(problem.decode(x)) for x in X.reshape(-1, X.shape[-1])]).reshape(X.shape)


class GenomeSampling(Sampling):
    """Initial population: the seed genomes first (in order), then uniformly random valid genomes, all distinct
    architectures (seeds that coincide at a small depth count once), so a population of N is N evaluations."""

    def __init__(self, seeds: Sequence[Genome] = (), max_draws_per_sample: int = 100) -> None:
        super().__init__()
        self.seeds, self.max_draws_per_sample = list(seeds), max_draws_per_sample

    def _do(self, problem: GenomeProblem, n_samples: int, *args, random_state=None, **kwargs) -> np.ndarray:
        genomes: dict[str, Genome] = {}
        for genome in self.seeds:
            genomes.setdefault(genome.hash(), genome)
        for _ in range(n_samples * self.max_draws_per_sample):  # a tiny genome space may hold fewer than asked
            if len(genomes) >= n_samples:
                break
            genome = random_genome(problem.depth, random_state)
            genomes.setdefault(genome.hash(), genome)
        return np.array([problem.encode(g) for g in list(genomes.values())[:n_samples]])


class TwoPointCrossover(Crossover):
    """Two-point crossover of two parents into two children.

    With ``at_slots`` (the default) cut points fall between slots, so whole 5-gene slots are exchanged and a
    slot's class and sharing genes stay together; otherwise cuts may fall between any two genes.
    """

    def __init__(self, at_slots: bool = True, prob: float = 0.9) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.at_slots = at_slots

    def _do(self, problem: GenomeProblem, X: np.ndarray, *args, random_state=None, **kwargs) -> np.ndarray:
        _, n_matings, n_var = X.shape
        unit = 5 if self.at_slots else 1
        cut_points = np.arange(1, n_var // unit)  # boundaries strictly inside the vector
        children = X.copy()
        for k in range(n_matings):
            if len(cut_points) == 0:
                continue
            cuts = random_state.choice(cut_points, size=min(2, len(cut_points)), replace=False)
            start, end = (cuts.min(), cuts.max()) if len(cuts) == 2 else (cuts[0], n_var // unit)
            segment = slice(start * unit, end * unit)
            children[0, k, segment], children[1, k, segment] = X[1, k, segment], X[0, k, segment]
        return repaired(problem, children)


class GeneMutation(Mutation):
    """Each gene is redrawn uniformly within its own valid range with probability ``gene_prob`` (0.1)."""

    def __init__(self, gene_prob: float = 0.1) -> None:
        super().__init__(prob=1.0)
        self.gene_prob = gene_prob

    def _do(self, problem: GenomeProblem, X: np.ndarray, *args, random_state=None, **kwargs) -> np.ndarray:
        X = X.copy()
        ids = np.array(class_ids())
        mutate = random_state.random(X.shape) < self.gene_prob
        fresh = random_state.integers(problem.xl, problem.xu + 1, size=X.shape)
        fresh[:, 0::5] = random_state.choice(ids, size=fresh[:, 0::5].shape)  # class ids need not be contiguous
        X[mutate] = fresh[mutate]
        return repaired(problem, X)


class GenomeRepair(Repair):
    """Make every vector a valid genome (crossover and mutation already return repaired vectors; this covers
    sampling and anything a user plugs in)."""

    def _do(self, problem: GenomeProblem, X: np.ndarray, **kwargs) -> np.ndarray:
        return repaired(problem, X)


class CanonicalDuplicates(DuplicateElimination):
    """Two vectors are duplicates when they decode to the same architecture (equal canonical hash)."""

    def __init__(self, problem: GenomeProblem) -> None:
        super().__init__()
        self.problem = problem

    def _do(self, pop, other, is_duplicate: np.ndarray) -> np.ndarray:
        seen = {self.problem.decode(ind.X).hash() for ind in other} if other is not None else set()
        for index, ind in enumerate(pop):
            key = self.problem.decode(ind.X).hash()
            is_duplicate[index] = key in seen
            seen.add(key)
        return is_duplicate
