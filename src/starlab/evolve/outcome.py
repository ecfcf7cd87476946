"""What a search ends with: its summary, or the error that says the setup (not the architectures) is broken.

Both the generational loop (:mod:`starlab.evolve.search`) and the steady state (:mod:`starlab.evolve.steady`)
return and raise these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from starlab.assess import Evaluation
from starlab.status import Status


class SearchFailed(ValueError):
    """The search cannot produce anything meaningful (every evaluation of a generation failed)."""


def check_not_all_failed(generation: int, evaluations: Sequence[Evaluation]) -> None:
    """A generation in which every candidate failed means the setup is broken, not the architectures."""
    if evaluations and all(e.status == Status.FAILED for e in evaluations):
        raise SearchFailed(
            f"every evaluation of generation {generation} failed ({len(evaluations)} of {len(evaluations)}); "
            f"the first: {evaluations[0].metrics.get('error', 'no error recorded')}"
        )


@dataclass
class SearchSummary:
    directory: Path
    generations: int
    evaluations: int  # of the search protocol (what the budget counts)
    new_evaluations: int  # run now, on every rung
    seconds: float
    front: list[dict] = field(default_factory=list)
    hypervolume: float = 0.0
    failed: int = 0  # stored evaluations of the search protocol whose status is 'failed'
    promotions: dict[str, int] = field(default_factory=dict)  # evaluations on each higher rung
