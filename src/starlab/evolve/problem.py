"""The search problem: a fixed-depth genome space as a pymoo integer problem, and the objectives to minimise.

pymoo sees a genome as ``5 * depth`` integers with per-gene bounds; everything it does (sorting, crowding,
tournaments, hypervolume) works on that vector. Decoding back to a :class:`Genome` repairs it, so every
candidate evaluated is valid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pymoo.core.problem import Problem

from starlab.genome import Genome, gene_ranges

#: Objectives a search may minimise: task quality (lower is better), parameters, inference cache.
OBJECTIVES = ("quality", "params", "cache")


def check_objectives(names: Sequence[str]) -> tuple[str, ...]:
    """Validate an objective list such as ``("quality", "cache")``."""
    names = tuple(n.strip() for n in names)
    if not names or len(set(names)) != len(names) or not set(names) <= set(OBJECTIVES):
        raise ValueError(f"objectives must be distinct names from {', '.join(OBJECTIVES)}; got {', '.join(names)}")
    return names


class GenomeProblem(Problem):
    """Genomes of ``depth`` slots with ``n_obj`` values to minimise (the search decides what they are)."""

    def __init__(self, depth: int, n_obj: int) -> None:
        self.depth = depth
        ranges = np.array(gene_ranges(depth) * depth)
        super().__init__(n_var=5 * depth, n_obj=n_obj, xl=ranges[:, 0], xu=ranges[:, 1], vtype=int)

    def decode(self, x: np.ndarray) -> Genome:
        """A valid genome from a gene vector (out-of-range genes are clipped, then sharing is repaired)."""
        genes = np.clip(np.rint(x), self.xl, self.xu).astype(int).reshape(self.depth, 5)
        return Genome.from_slots(genes.tolist(), repair=True)

    def encode(self, genome: Genome) -> np.ndarray:
        if len(genome) != self.depth:
            raise ValueError(f"genome {genome.text()} has {len(genome)} slots; this search uses depth {self.depth}")
        return np.array([gene for slot in genome.slots for gene in slot], dtype=int)
