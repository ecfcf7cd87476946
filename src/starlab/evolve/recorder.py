"""A search's generations, recorded: the one place both loops store a generation and tell who listens.

A generation record is the surviving population with its objective values, its Pareto front, hypervolume and
the loop's stats. After storing it the recorder prunes the kept weights to the run's front (under the ``front``
policy), then tells the reporter and the ``on_generation`` hook (the command line's live report and
TensorBoard scalars: evolution does not import reporting).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from starlab.assess import Objectives, pareto_front
from starlab.evolve.evaluations import Reporter
from starlab.evolve.problem import GenomeProblem
from starlab.evolve.weights import has_weights, prune
from starlab.store import Generation, RunStore, load_run


class GenerationRecorder:
    """Records one run's generations into its ``store``, with its ``objectives``; the ``problem`` decodes the
    population's gene vectors."""

    def __init__(
        self,
        store: RunStore,
        objectives: Objectives,
        problem: GenomeProblem,
        keep_weights: str,
        reporter: Reporter | None = None,
        on_generation: Callable[[Generation], None] | None = None,
    ) -> None:
        self.store, self.objectives, self.problem, self.keep_weights = store, objectives, problem, keep_weights
        self.reporter, self.on_generation = reporter, on_generation

    def record(self, generation: int, pop, stats: dict[str, Any]) -> Generation:
        """Store the surviving population ``pop`` (a pymoo population: gene vectors and objective values) with its
        Pareto front, hypervolume and ``stats``."""
        values = np.array(pop.get("F"), dtype=float)
        genomes = [self.problem.decode(x) for x in pop.get("X")]
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
