"""A search's progress as TensorBoard scalars (``starlab evolve --tensorboard LOGDIR``), one step per generation.

Per generation: the population's hypervolume, best quality and front size, the evaluations stored so far (per
rung), and with a ladder each step's rank agreement (Spearman, Kendall), with the surrogate its agreement; all
read from the generation record the search stores (:attr:`starlab.store.Generation.stats`). The step is the
generation number. A resumed run writes only the generations it records anew: those the store held when it
started (the synchronous loop replays them) were written by the process that recorded them, so no step is
written twice. ``tensorboard`` is an optional extra (``pip install 'starlab[tensorboard]'``); without it
``--tensorboard`` is refused before the search starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from starlab.store import Generation

INSTALL_HINT = "--tensorboard needs tensorboard: pip install 'starlab[tensorboard]'"


def scalars(generation: Generation) -> dict[str, float]:
    """The generation's scalars by tag (a statistic the record does not hold is left out)."""
    stats, values = generation.stats, {}
    if generation.hypervolume is not None:
        values["search/hypervolume"] = generation.hypervolume
    qualities = [m["quality"] for m in generation.population if "quality" in m]
    if qualities:
        values["search/best_quality"] = min(qualities)
    values["search/front_size"] = len(generation.front)
    counts = stats.get("evaluations", {})
    if counts:
        values["search/evaluations"] = next(iter(counts.values()))  # the search protocol, the ladder's bottom
    if len(counts) > 1:
        values.update({f"evaluations/{rung}": count for rung, count in counts.items()})
    for step in stats.get("correlations", []):
        values.update(_agreement(f"ladder/{step['low']}-to-{step['high']}", step))
    values.update(_agreement("surrogate", stats.get("surrogate", {})))
    return {tag: float(value) for tag, value in values.items()}


def _agreement(prefix: str, agreement: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{name}": agreement[name] for name in ("spearman", "kendall") if agreement.get(name) is not None}


class TensorBoardScalars:
    """The search's ``on_generation`` hook that writes :func:`scalars` to ``logdir``. Made before the search
    (so a missing ``tensorboard`` is refused first); :meth:`open` once the run's store is open."""

    def __init__(self, logdir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(INSTALL_HINT) from None
        if not str(logdir).strip():
            raise ValueError("--tensorboard needs a directory for the event files")
        self.logdir = Path(logdir)
        if self.logdir.exists() and not self.logdir.is_dir():
            raise ValueError(f"--tensorboard {self.logdir} is not a directory")
        self._writer_class, self.writer, self.recorded = SummaryWriter, None, set()

    def open(self, stored: Iterable[Generation] = ()) -> None:
        """Start the event file; ``stored``: the generations the run held already, which are not written again."""
        self.recorded = {g.generation for g in stored}
        try:
            self.writer = self._writer_class(str(self.logdir))
        except OSError as error:
            raise ValueError(f"cannot write TensorBoard scalars to {self.logdir}: {error.strerror or error}") from None

    def __call__(self, generation: Generation) -> None:
        if self.writer is None or generation.generation in self.recorded:
            return
        for tag, value in scalars(generation).items():
            self.writer.add_scalar(tag, value, global_step=generation.generation)
        self.writer.flush()  # watched while the search runs: each generation visible as soon as it is recorded

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
