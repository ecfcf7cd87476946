"""The evaluation record: one genome assessed under one protocol, exactly as it is returned by ``assess()``,
carried across processes and machines by the executors (``to_dict`` / ``from_dict``), stored in the run's
SQLite file, and read back unchanged."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlab.status import Status


@dataclass(frozen=True)
class Evaluation:
    """One finished assessment.

    Attributes:
        genome, hash: the genome's canonical text and hash (the store's key with ``protocol`` and ``seed``).
        width: the model width it was trained and sized at.
        status: ``ok``, ``diverged`` or ``failed`` (see :mod:`starlab.status`).
        quality: lower is better; the protocol's worst quality unless ``ok``.
        scores: per-task scores, higher is better.
        params, cache_bytes: non-embedding parameters after sharing, and the inference cache at
            :data:`~starlab.assess.objectives.CACHE_LENGTH` tokens in 16-bit values.
        seconds: wall time of the assessment; worker: ``host:pid`` where it ran.
        metrics: protocol-specific details (per-setting results, perplexity, token accuracy...).
    """

    genome: str
    hash: str
    protocol: str
    seed: int
    width: int
    status: Status
    quality: float
    scores: dict[str, float]
    params: int
    cache_bytes: int
    seconds: float
    worker: str
    metrics: dict[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status.parse(self.status))
        if not math.isfinite(self.quality):  # SQLite would store NULL and the row would be lost
            raise ValueError(f"evaluation of {self.genome} has quality {self.quality!r}; it must be finite")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready): what crosses process boundaries."""
        return {**dataclasses.asdict(self), "status": self.status.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evaluation:
        return cls(**data)


def spent(evaluations: Sequence[Evaluation]) -> dict[str, float]:
    """How many evaluations, and the wall, CPU and GPU seconds they took (CPU and GPU where recorded)."""
    return {
        "evaluations": len(evaluations),
        "seconds": sum(e.seconds for e in evaluations),
        "cpu_seconds": sum(e.metrics.get("cpu_seconds", 0.0) for e in evaluations),
        "gpu_seconds": sum(e.metrics.get("gpu_seconds", 0.0) for e in evaluations),
    }
