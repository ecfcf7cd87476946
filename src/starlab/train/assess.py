"""Assessment: build a genome's model, train it under a protocol, and measure all three objectives.

``assess(genome, protocol, width, seed, device) -> Result`` is what evolution calls for every candidate.
A protocol fixes the tasks, model width, budgets and how task scores become one *quality* (lower is better).
The size objectives are exact: non-embedding parameters at the assessment width and the inference cache at
4096 tokens in 16-bit values (both independent of any task's vocabulary).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from starlab.genome import Genome
from starlab.liv import LIVConfig, check_width
from starlab.model import size_report

CACHE_LENGTH = 4096
OK, DIVERGED, FAILED = "ok", "diverged", "failed"

#: Told, as one line of text, what an assessment is training now.
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """What a protocol measures: quality (lower is better), per-task scores and details."""

    quality: float
    scores: dict[str, float]
    status: str = OK
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    genome: str  # canonical text
    hash: str
    protocol: str
    seed: int
    width: int
    quality: float
    scores: dict[str, float]
    params: int  # non-embedding, after sharing
    cache_bytes: int  # at CACHE_LENGTH tokens, 16-bit values
    seconds: float
    status: str
    metrics: dict[str, Any]

    def to_dict(self) -> dict:
        return asdict(self)


class Protocol(ABC):
    """A way to measure quality. Subclasses set ``name``, ``width``, ``description`` and ``worst_quality``.

    ``worst_quality`` is the quality of a model that learned nothing; diverged and failed assessments get it,
    and it is the hypervolume reference point's quality coordinate.
    """

    name: str
    width: int
    description: str
    worst_quality: float = 1.0
    config: LIVConfig = LIVConfig()

    @abstractmethod
    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None
    ) -> Outcome:
        """Train and evaluate; never raise for a model that merely diverges (return status 'diverged').

        ``progress(message)`` is told what is being trained, run by run (the CLI shows it).
        """

    def with_data(self, data: str | None) -> Protocol:
        """This protocol on a user corpus; only language-modelling protocols read one."""
        if data is not None:
            raise ValueError(f"protocol {self.name!r} generates its own data; --data applies to lm-* protocols")
        return self


#: How much each family's token mixing is worth to the synthetic quality.
SYNTHETIC_VALUE = {"attention": 1.0, "recurrence": 0.75, "convolution": 0.55, "memoryless": 0.25}


class SyntheticProtocol(Protocol):
    """An analytic stand-in for quality, for testing and benchmarking search without training.

    Quality rewards token mixers in proportion to their expressiveness (attention > recurrence > convolution
    > memoryless, differential a little more), needs at least one gated MLP, and charges a small price for
    every slot that shares: it conflicts with the size objectives the way real quality does, so the Pareto
    fronts are non-trivial. Instantaneous and deterministic.
    """

    name = "synthetic"
    width = 64
    description = "analytic quality, no training (tests and search benchmarks)"

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None
    ) -> Outcome:
        from starlab.liv import get_class

        specs = [get_class(slot.cls) for slot in genome.slots]
        value = sum(SYNTHETIC_VALUE[s.family] + 0.15 * s.differential for s in specs) / len(specs)
        has_mlp = any(s.family == "memoryless" for s in specs)
        sharing = sum(lead is not None and lead != i for i, lead in enumerate(genome.featurizer_leaders()))
        sharing += sum(src is not None and src != i for i, src in enumerate(genome.feature_sources()))
        quality = math.exp(-1.5 * value) * (0.9 if has_mlp else 1.0) + 0.02 * sharing / len(specs)
        return Outcome(quality=quality, scores={"synthetic": 1.0 - quality})


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    PROTOCOLS[protocol.name] = protocol
    return protocol


def get_protocol(name: str) -> Protocol:
    _load_protocols()
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def _load_protocols() -> None:
    """Protocols defined elsewhere register themselves on import."""
    import starlab.train.protocols  # noqa: F401


register_protocol(SyntheticProtocol())


def assess(
    genome: Genome,
    protocol: str | Protocol = "quick",
    width: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data: str | None = None,
    progress: Progress | None = None,
) -> Result:
    """Build, train and measure ``genome`` under ``protocol``; sizes at ``width`` (default: the protocol's).

    ``data`` is a local corpus for language-modelling protocols.
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    protocol = protocol.with_data(data)
    width = check_width(width or protocol.width)
    start = time.perf_counter()
    outcome = protocol.run(genome, width, seed, torch.device(device), progress)
    sizes = size_report(genome, width, vocab_size=2, seq_len=CACHE_LENGTH, config=protocol.config)
    return Result(
        genome=genome.canonical().text(),
        hash=genome.hash(),
        protocol=protocol.name,
        seed=seed,
        width=width,
        quality=outcome.quality,
        scores=outcome.scores,
        params=sizes.params_non_embedding,
        cache_bytes=sizes.cache_bytes,
        seconds=time.perf_counter() - start,
        status=outcome.status,
        metrics=outcome.metrics,
    )
