"""What a search loop is given: the parts of one run that ``Search`` puts together.

Both strategies (:class:`~starlab.evolve.generational.Generational` and
:class:`~starlab.evolve.steady.SteadyState`) take the same parts, explicitly, and nothing else of the search.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlab.assess import Objectives
from starlab.evolve.archive import Archive
from starlab.evolve.config import SearchConfig
from starlab.evolve.evaluations import Evaluations
from starlab.evolve.problem import GenomeProblem
from starlab.evolve.recorder import GenerationRecorder


@dataclass(frozen=True)
class LoopParts:
    """The run's ``config``, its genome ``problem`` and ``objectives``, the ``archive`` of what was told, the
    store-first ``evaluations`` and the generation ``recorder``."""

    config: SearchConfig
    problem: GenomeProblem
    objectives: Objectives
    archive: Archive
    evaluations: Evaluations
    recorder: GenerationRecorder
