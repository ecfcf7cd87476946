"""An analytic stand-in for quality, for testing and benchmarking search without training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from starlab.assess.protocol import Outcome, Progress, Protocol, register_protocol
from starlab.genome import Genome
from starlab.liv import get_class

#: How much each family's token mixing is worth to the synthetic quality.
SYNTHETIC_VALUE = {"attention": 1.0, "recurrence": 0.75, "convolution": 0.55, "memoryless": 0.25}


def synthetic_quality(genome: Genome) -> float:
    """Rewards token mixers in proportion to their expressiveness (attention > recurrence > convolution >
    memoryless, differential a little more), needs at least one gated MLP, and charges a small price for every
    slot that shares: it conflicts with the size objectives the way real quality does, so the Pareto fronts
    are non-trivial."""
    specs = [get_class(slot.cls) for slot in genome.slots]
    value = sum(SYNTHETIC_VALUE[s.family] + 0.15 * s.differential for s in specs) / len(specs)
    has_mlp = any(s.family == "memoryless" for s in specs)
    sharing = sum(lead is not None and lead != i for i, lead in enumerate(genome.featurizer_leaders()))
    sharing += sum(src is not None and src != i for i, src in enumerate(genome.feature_sources()))
    return math.exp(-1.5 * value) * (0.9 if has_mlp else 1.0) + 0.02 * sharing / len(specs)


@dataclass(frozen=True, kw_only=True, eq=False)
class SyntheticProtocol(Protocol):
    """:func:`synthetic_quality` as a protocol: instantaneous and deterministic."""

    kind: ClassVar[str] = "synthetic"
    quality_meaning: ClassVar[str] = "analytic stand-in (no training)"
    name: str = "synthetic"
    description: str = "analytic quality, no training (tests and search benchmarks)"
    width: int = 64

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None
    ) -> Outcome:
        quality = synthetic_quality(genome)
        return Outcome(quality=quality, scores={"synthetic": 1.0 - quality})

    def training(self) -> dict[str, Any]:
        return {"summary": "nothing (a formula of the genome)", "steps": 0}


register_protocol(SyntheticProtocol(cost_s=0.0))
