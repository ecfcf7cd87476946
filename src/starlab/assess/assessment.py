"""``assess(genome, protocol) -> Evaluation``: build, train and measure one genome; what evolution calls."""

from __future__ import annotations

import math
import os
import socket
import time

import torch

from starlab.assess.objectives import genome_sizes
from starlab.assess.protocol import Outcome, Progress, Protocol, get_protocol
from starlab.assess.record import Evaluation
from starlab.errors import Setting, SettingError, show
from starlab.genome import Genome
from starlab.liv import check_width
from starlab.model import check_device, check_model_fits
from starlab.status import Status
from starlab.train import Checkpointing

#: Seeds are stored in SQLite INTEGER columns and seed torch, numpy and pymoo: 0..2**63 - 1 fits them all.
MAX_SEED = 2**63 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """A seed as an integer in 0..MAX_SEED, or a one-line ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SettingError(
            "{0} must be a non-negative integer (at most 2**63-1), got {1}", Setting(name), show(seed, limit=40)
        )
    return seed


def finite(outcome: Outcome, protocol: Protocol) -> Outcome:
    """A NaN or infinite quality is a diverged evaluation with the worst quality (never a number to rank)."""
    if math.isfinite(outcome.quality):
        return outcome
    metrics = {**outcome.metrics, "reported_quality": repr(outcome.quality)}
    return Outcome(protocol.worst_quality, outcome.scores, Status.DIVERGED, metrics)


def assess(
    genome: Genome,
    protocol: str | Protocol = "quick",
    width: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    data: str | None = None,
    progress: Progress | None = None,
    checkpointing: Checkpointing | None = None,
) -> Evaluation:
    """Build, train and measure ``genome`` under ``protocol`` (a name or a :class:`Protocol`).

    ``width`` defaults to the protocol's; ``data`` is a local corpus for language-modelling protocols;
    ``progress(message)`` is told what is being trained; ``checkpointing`` makes an LM protocol's run
    resumable (``starlab.train.Checkpointing``).
    """
    protocol = get_protocol(protocol) if isinstance(protocol, str) else protocol
    protocol = protocol.with_data(data)
    width = check_width(width or protocol.width)  # type: ignore[attr-defined]
    seed, device = check_seed(seed), check_device(device)
    # before any data is generated or tokenized: the largest model this protocol builds must be trainable here
    check_model_fits(genome, width, protocol.vocab_bound, device, protocol.config, training=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    outcome = finite(protocol.run(genome, width, seed, device, progress, checkpointing), protocol)
    seconds = time.perf_counter() - start
    spent = {
        "cpu_seconds": time.process_time() - cpu_start,
        "gpu_seconds": seconds if device.type == "cuda" else 0.0,
        "threads": torch.get_num_threads(),
    }  # what the seconds were measured with (runtime.configure)
    sizes = genome_sizes(genome, width, protocol.config)
    return Evaluation(
        genome=genome.canonical().text(),
        hash=genome.hash(),
        protocol=protocol.name,
        seed=seed,
        width=width,
        status=outcome.status,
        quality=outcome.quality,
        scores=outcome.scores,
        params=sizes.params,
        cache_bytes=sizes.cache_bytes,
        seconds=seconds,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        metrics={**outcome.metrics, **spent},  # CPU seconds of this process (all its threads), GPU-seconds, threads
    )
