"""The search problem: genomes of a fixed depth as a pymoo integer problem, and X -> F as pymoo intends.

pymoo sees a genome as ``5 * depth`` integers with per-gene bounds; everything it does (sorting, crowding,
tournaments, hypervolume) works on that vector. Decoding back to a :class:`Genome` repairs it, so every
candidate evaluated is valid. Evaluating a population decodes it, has every genome assessed (by whatever
``assess`` the search plugs in: the store first, then the executor) and turns the evaluations into the
objective vectors with :class:`~starlab.assess.Objectives`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pymoo.core.problem import Problem

from starlab.assess import Evaluation, Objectives
from starlab.genome import Genome, gene_ranges

#: Assesses genomes (in order) and returns one evaluation each.
AssessGenomes = Callable[[Sequence[Genome]], list[Evaluation]]


class GenomeProblem(Problem):
    """Genomes of ``depth`` slots; F = ``objectives`` of what ``assess`` returns (both optional for operators)."""

    def __init__(self, depth: int, objectives: Objectives | None = None, assess: AssessGenomes | None = None) -> None:
        self.depth, self.objectives, self.assess = depth, objectives, assess
        ranges = np.array(gene_ranges(depth) * depth)
        n_obj = len(objectives.names) if objectives else 1
        super().__init__(n_var=5 * depth, n_obj=n_obj, xl=ranges[:, 0], xu=ranges[:, 1], vtype=int)

    def _evaluate(self, X: np.ndarray, out: dict, *args, **kwargs) -> None:
        if self.objectives is None or self.assess is None:
            raise ValueError("this GenomeProblem was built without objectives and an assess function")
        out["F"] = self.objectives.values(self.assess([self.decode(x) for x in X]))

    def decode(self, x: np.ndarray) -> Genome:
        """A valid genome from a gene vector (out-of-range genes are clipped, then sharing is repaired)."""
        genes = np.clip(np.rint(x), self.xl, self.xu).astype(int).reshape(self.depth, 5)
        return Genome.from_slots(genes.tolist(), repair=True)

    def encode(self, genome: Genome) -> np.ndarray:
        if len(genome) != self.depth:
            raise ValueError(f"genome {genome.text()} has {len(genome)} slots; this search uses depth {self.depth}")
        return np.array([gene for slot in genome.slots for gene in slot], dtype=int)
