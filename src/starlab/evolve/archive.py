"""What a search has been told so far: every evaluation, per ladder rung, in the order it was told.

Selection, promotion and the surrogate read this, never the whole store: a resumed run replays the store
generation by generation, and at generation ``g`` its archive holds exactly what the uninterrupted run's
held at ``g`` (the store may already hold later generations' evaluations), so every decision repeats.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlab.assess import Evaluation
from starlab.assess.ladder import comparable_evaluations, measured, rung_correlations
from starlab.genome import Genome


class Archive:
    """Evaluations by rung (``rungs[0]`` is the search protocol) and genome hash."""

    def __init__(self, rungs: Sequence[str], worst_quality: float) -> None:
        self.rungs, self.worst_quality = list(rungs), worst_quality
        self.by_rung: dict[str, dict[str, Evaluation]] = {rung: {} for rung in self.rungs}
        self._comparable: dict[str, Evaluation] | None = None

    def add(self, evaluation: Evaluation) -> None:
        self.by_rung[evaluation.protocol][evaluation.hash] = evaluation
        self._comparable = None

    def has(self, genome: Genome, rung: int = 0) -> bool:
        return genome.hash() in self.by_rung[self.rungs[rung]]

    def count(self, rung: int = 0) -> int:
        return len(self.by_rung[self.rungs[rung]])

    def on(self, genomes: Sequence[Genome], rung: int) -> list[Evaluation]:
        """The evaluations of ``genomes`` (all measured there) on rung ``rung``, as measured."""
        by_hash = self.by_rung[self.rungs[rung]]
        return [by_hash[g.hash()] for g in genomes]

    def evaluations(self, rung: int = 0) -> list[Evaluation]:
        return list(self.by_rung[self.rungs[rung]].values())

    def comparable(self, genomes: Sequence[Genome] | None = None) -> list[Evaluation]:
        """The bottom-rung evaluations of ``genomes`` (all told already; ``None``: all, in the order told) with
        qualities on one scale, the top rung's (:func:`~starlab.assess.ladder.comparable_evaluations`);
        without a ladder, as measured."""
        if self._comparable is None:
            rungs = [self.evaluations(k) for k in range(len(self.rungs))]
            self._comparable = {e.hash: e for e in comparable_evaluations(rungs, self.worst_quality)}
        if genomes is None:
            return list(self._comparable.values())
        return [self._comparable[g.hash()] for g in genomes]

    def correlations(self) -> list[dict]:
        """Per step up the ladder, the rank agreement of its rungs over the genomes measured on both."""
        return rung_correlations(self.rungs, [measured(self.evaluations(k)) for k in range(len(self.rungs))])
