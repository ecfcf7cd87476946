"""The objectives a search minimises, in one place: quality, parameters and inference cache.

Sizes are exact and free: non-embedding parameters after sharing, and the inference cache at
:data:`CACHE_LENGTH` tokens in 16-bit values, both independent of any task's vocabulary. A search compares
sizes relative to a reference genome (all SA-1 of the same depth and width, 1.0 = its size), so that
crowding, weighted sums and hypervolumes see comparable scales; the hypervolume reference point is the
protocol's worst quality and twice the reference sizes, fixed across runs so that runs compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol as TypingProtocol

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from starlab.assess.protocol import Protocol
from starlab.assess.record import Evaluation
from starlab.genome import Genome
from starlab.liv import LIVConfig
from starlab.model import size_report
from starlab.status import Status

#: Tokens of context at which the inference cache is measured (the paper's sequence length).
CACHE_LENGTH = 4096

#: Objectives a search may minimise, and the paper's three standard searches as objective lists.
OBJECTIVES = ("quality", "params", "cache")
OBJECTIVE_PRESETS = {"quality": ("quality",), "size": ("quality", "params"), "cache": ("quality", "cache")}

#: The reference genome is this class in every slot; the reference point is this multiple of its sizes.
SIZE_REFERENCE_CLASS = 1
SIZE_REFERENCE_POINT = 2.0


def check_objectives(names: str | Sequence[str]) -> tuple[str, ...]:
    """Objectives from a list, comma-separated text (``"quality,cache"``) or a preset (``"cache"``)."""
    if isinstance(names, str):
        names = OBJECTIVE_PRESETS.get(names.strip(), names.split(","))
    names = tuple(n.strip() for n in names)
    if not names or len(set(names)) != len(names) or not set(names) <= set(OBJECTIVES):
        raise ValueError(
            f"objectives must be distinct names from {', '.join(OBJECTIVES)} (or one of the presets "
            f"{', '.join(OBJECTIVE_PRESETS)}); got {', '.join(names)}"
        )
    return names


@dataclass(frozen=True)
class Sizes:
    params: int  # non-embedding, after sharing
    cache_bytes: int  # at CACHE_LENGTH tokens, 16-bit values


def genome_sizes(genome: Genome, width: int, config: LIVConfig) -> Sizes:
    """The two size objectives, exact (the model is built on the meta device, without memory)."""
    report = size_report(genome, width, vocab_size=2, seq_len=CACHE_LENGTH, config=config)
    return Sizes(report.params_non_embedding, report.cache_bytes)


def failed_evaluation(genome: Genome, protocol: Protocol, seed: int, width: int, error: BaseException) -> Evaluation:
    """The record of an assessment that raised (or whose worker died): the worst quality, the exact sizes."""
    sizes = genome_sizes(genome, width, protocol.config)
    return Evaluation(
        genome=genome.canonical().text(), hash=genome.hash(), protocol=protocol.name, seed=seed, width=width,
        status=Status.FAILED, quality=protocol.worst_quality, scores={}, params=sizes.params,
        cache_bytes=sizes.cache_bytes, seconds=0.0, worker="", metrics={"error": f"{type(error).__name__}: {error}"},
    )  # fmt: skip


class Measured(TypingProtocol):
    """What an objective vector is made of: an :class:`Evaluation`, or a predicted quality with exact sizes."""

    quality: float
    params: int
    cache_bytes: int


class Objectives:
    """A search's objective vector for each evaluation: quality as measured, sizes relative to the reference.

    ``worst_quality`` (default: the protocol's) is the hypervolume reference point's quality; a ladder's
    comparable qualities are on its top rung's scale, and so is its worst quality.
    """

    def __init__(
        self, names: str | Sequence[str], protocol: Protocol, depth: int, width: int, worst_quality: float | None = None
    ) -> None:
        self.names = check_objectives(names)
        self.protocol = protocol
        self.worst_quality = protocol.worst_quality if worst_quality is None else worst_quality
        reference_genome = Genome.from_slots([(SIZE_REFERENCE_CLASS, 1, 1, 1, 1)] * depth)
        reference = genome_sizes(reference_genome, width, protocol.config)
        self.scale = {"quality": 1.0, "params": reference.params, "cache": reference.cache_bytes}

    def values(self, evaluations: Sequence[Measured]) -> np.ndarray:
        """One row per evaluation, one column per objective (all minimised)."""
        raw = [{"quality": e.quality, "params": e.params, "cache": e.cache_bytes} for e in evaluations]
        return np.array([[r[name] / self.scale[name] for name in self.names] for r in raw], dtype=float)

    @property
    def reference_point(self) -> np.ndarray:
        worst = {"quality": self.worst_quality, "params": SIZE_REFERENCE_POINT, "cache": SIZE_REFERENCE_POINT}
        return np.array([worst[name] for name in self.names])

    def hypervolume(self, values: np.ndarray) -> float:
        return float(HV(ref_point=self.reference_point)(values))


def pareto_front(values: np.ndarray) -> list[int]:
    """Indices of the non-dominated rows of ``values`` (all objectives minimised), in row order."""
    return sorted(int(i) for i in NonDominatedSorting().do(values, only_non_dominated_front=True))
