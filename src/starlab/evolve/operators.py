"""Variation operators on genome vectors, as pymoo operators: sampling, crossover, mutation, repair, dedup.

Crossover and mutation repair what they produce, so every operator's output is a valid genome. Each draws
randomness only from the ``random_state`` pymoo passes in, so a search is a deterministic function of its seed
and the objective values it is told (which is what makes resuming by replay exact).

With a depth range (:class:`~starlab.evolve.problem.GenomeProblem` with ``min_depth < depth``) sampling draws
each genome's depth uniformly, mutation also inserts a random slot (probability :data:`INSERT_PROB` per
offspring) or deletes one (:data:`DELETE_PROB`) within the range, and crossover aligns parents of different
depths by slot index. With backbone genes, crossover exchanges each of them with probability 1/2 and mutation
redraws them like any gene. A fixed depth without backbone genes draws exactly what it always drew.
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
from starlab.genome import Genome

#: Per offspring of a variable-depth search, the probability that mutation inserts a random slot at a random
#: position (when the genome is shallower than the range's maximum) ...
INSERT_PROB = 0.1
#: ... and, otherwise, that it deletes a random slot (when deeper than the minimum).
DELETE_PROB = 0.1
#: Probability that crossover exchanges a backbone gene between the two children.
BACKBONE_SWAP_PROB = 0.5


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
            genome = problem.random_genome(random_state)
            genomes.setdefault(genome.hash(), genome)
        return np.array([problem.encode(g) for g in list(genomes.values())[:n_samples]])


class TwoPointCrossover(Crossover):
    """Two-point crossover of two parents into two children.

    With ``at_slots`` (the default) cut points fall between slots, so whole slots are exchanged and a slot's
    class and sharing genes stay together; otherwise cuts may fall between any two genes. Parents of different
    depths are aligned by slot index (slot ``i`` of one faces slot ``i`` of the other, empty slots facing the
    longer parent's tail) and the cuts fall within the longer parent, so children's depths lie between their
    parents'. Backbone genes are exchanged each with probability :data:`BACKBONE_SWAP_PROB` (uniform
    crossover: they have no position relative to the slots).
    """

    def __init__(self, at_slots: bool = True, prob: float = 0.9) -> None:
        super().__init__(n_parents=2, n_offsprings=2, prob=prob)
        self.at_slots = at_slots

    def _do(self, problem: GenomeProblem, X: np.ndarray, *args, random_state=None, **kwargs) -> np.ndarray:
        _, n_matings, _ = X.shape
        unit = problem.layout.size if self.at_slots else 1
        longest = problem.depths(X).max(axis=0)
        backbone = np.arange(problem.slot_genes, problem.n_var)
        children = X.copy()
        for k in range(n_matings):
            units = longest[k] * problem.layout.size // unit
            cut_points = np.arange(1, units)  # boundaries strictly inside the longer parent
            if len(cut_points):
                cuts = random_state.choice(cut_points, size=min(2, len(cut_points)), replace=False)
                start, end = (cuts.min(), cuts.max()) if len(cuts) == 2 else (cuts[0], units)
                segment = slice(start * unit, end * unit)
                children[0, k, segment], children[1, k, segment] = X[1, k, segment], X[0, k, segment]
            if len(backbone):
                swap = backbone[random_state.random(len(backbone)) < BACKBONE_SWAP_PROB]
                children[0, k, swap], children[1, k, swap] = X[1, k, swap], X[0, k, swap]
        return repaired(problem, children)


class GeneMutation(Mutation):
    """Each gene of an occupied slot (and each backbone gene) is redrawn uniformly within its own valid range
    with probability ``gene_prob`` (0.1); with a depth range, then one slot inserted or deleted (see the module
    docstring)."""

    def __init__(self, gene_prob: float = 0.1, insert_prob: float = INSERT_PROB, delete_prob: float = DELETE_PROB):
        super().__init__(prob=1.0)
        if not (0 <= insert_prob and 0 <= delete_prob and insert_prob + delete_prob <= 1):
            raise ValueError(
                f"insert_prob and delete_prob must be >= 0 with a sum <= 1, got {insert_prob}, {delete_prob}"
            )
        self.gene_prob, self.insert_prob, self.delete_prob = gene_prob, insert_prob, delete_prob

    def _do(self, problem: GenomeProblem, X: np.ndarray, *args, random_state=None, **kwargs) -> np.ndarray:
        X = X.copy()
        mutate = random_state.random(X.shape) < self.gene_prob
        fresh = random_state.integers(problem.xl, problem.xu + 1, size=X.shape)
        for columns, values in problem.choice_columns():  # class ids need not be contiguous
            fresh[:, columns] = random_state.choice(values, size=(len(X), len(columns)))
        mutate &= problem.occupied_genes(X)  # an empty slot stays empty: depth changes by insertion and deletion
        X[mutate] = fresh[mutate]
        if problem.variable:
            for x, draw in zip(X, random_state.random(len(X)), strict=True):
                x[: problem.slot_genes] = problem.packed(self._resized(problem, x, draw, random_state))
        return repaired(problem, X)

    def _resized(self, problem: GenomeProblem, x: np.ndarray, draw: float, random_state) -> list[list[int]]:
        """The occupied slots of ``x`` with one random slot inserted (``draw < insert_prob``) or one deleted
        (the next ``delete_prob``), depth permitting. Group ids are labels: an inserted slot may join any."""
        rows = problem.slot_rows(x)
        if draw < self.insert_prob and len(rows) < problem.depth:
            new = problem.layout.random(len(rows) + 1, random_state)
            rows.insert(int(random_state.integers(0, len(rows) + 1)), new)
        elif self.insert_prob <= draw < self.insert_prob + self.delete_prob and len(rows) > problem.min_depth:
            del rows[int(random_state.integers(0, len(rows)))]
        return rows


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
