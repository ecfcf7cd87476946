"""What a search ends with: its summary, or the error that says the setup (not the architectures) is broken.

Both the generational loop (:mod:`starlab.evolve.generational`) and the steady state (:mod:`starlab.evolve.steady`)
return and raise these.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from starlab.assess import Evaluation
from starlab.evolve.config import SearchConfig
from starlab.status import Status
from starlab.store import Generation, RunStore


class SearchFailed(ValueError):
    """The search cannot produce anything meaningful (every evaluation of a generation failed)."""


class StorageFault(ValueError):
    """A file the run reads or writes failed (a full disk, a run directory deleted or made read-only): the
    run stops, and the evaluation it happened in is not stored, so a resume runs it again. An ``OSError``
    while assessing a genome is always this: no genome makes a disk full."""

    @classmethod
    def of(cls, error: OSError, genome: str, directory: Path) -> StorageFault:
        return cls(
            f"the evaluation of {genome} stopped on a file error, not a fault of the genome: "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}; "
            f"nothing was stored for it; fix the cause (free space?) and resume with `starlab evolve --resume "
            f"{directory}`"
        )


def check_not_all_failed(generation: int, evaluations: Sequence[Evaluation]) -> None:
    """A generation in which every candidate failed means the setup is broken, not the architectures."""
    if evaluations and all(e.status == Status.FAILED for e in evaluations):
        raise SearchFailed(
            f"every evaluation of generation {generation} failed ({len(evaluations)} of {len(evaluations)}); "
            f"the first: {evaluations[0].metrics.get('error', 'no error recorded')}"
        )


def check_any_succeeded(evaluations: Sequence[Evaluation], after: str) -> None:
    """A search none of whose evaluations measured a quality (all diverged or failed) found nothing: it ends
    as an error, never as a result with an empty front."""
    if any(e.status not in (Status.FAILED, Status.DIVERGED) for e in evaluations):
        return
    counts = Counter(e.status.value for e in evaluations)
    what = " and ".join(f"{n} of {len(evaluations)} {status}" for status, n in counts.most_common()) or "none ran"
    error = next((e.metrics["error"] for e in evaluations if e.metrics.get("error")), None)
    raise SearchFailed(
        f"no evaluation succeeded {after} ({what}), so the search found no genome"
        + (f"; the first error: {error}" if error else "; check the protocol's settings (a learning rate too high?)")
    )


def summarize(store: RunStore, config: SearchConfig, new_evaluations: int, seconds: float) -> SearchSummary:
    """A run's summary as its store holds it: the last generation recorded, the search protocol's evaluations
    and how many failed, and the evaluations on each higher rung (both loops end with this)."""
    generations = store.generations()
    last = generations[-1] if generations else Generation(-1, [], [], 0.0)
    evaluations = store.evaluations(config.protocol)
    return SearchSummary(
        store.directory, last.generation, len(evaluations), new_evaluations, seconds, last.front_members,
        last.hypervolume or 0.0, sum(e.status == Status.FAILED for e in evaluations),
        {rung: len(store.evaluations(rung)) for rung in config.rungs()[1:]},
    )  # fmt: skip


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
