"""The two free objectives, read exactly off the architecture: unique parameters and inference cache; and the
training FLOPs per token that model FLOPs utilisation (MFU) is counted against.

``size_report`` builds the backbone on PyTorch's ``meta`` device, where tensors have shapes but no storage,
so a 1B-parameter genome is measured in milliseconds without allocating it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from starlab.genome import Genome
from starlab.liv import LIVConfig, meta_device, state_nbytes
from starlab.model.backbone import Backbone


@dataclass(frozen=True)
class SlotReport:
    slot: int
    name: str
    family: str
    featurizer_leader: int | None  # 1-based slot whose featurizer this slot uses (None: its own)
    feature_source: int | None  # 1-based slot whose cached features this slot reuses
    params: int  # parameters first owned by this slot (shared ones count where they first appear)
    cache_bytes: int


@dataclass(frozen=True)
class SizeReport:
    canonical: str
    hash: str
    width: int
    vocab_size: int
    seq_len: int
    params: int
    params_non_embedding: int
    cache_bytes: int
    slots: tuple[SlotReport, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def size_report(
    genome: Genome,
    width: int,
    vocab_size: int,
    seq_len: int,
    config: LIVConfig | None = None,
    tie_embeddings: bool = True,
) -> SizeReport:
    """Parameters and cache (at ``seq_len`` tokens) of the genome's backbone, built on the meta device: no
    memory, exact counts. A search's objectives use ``starlab.assess.genome_sizes`` (its fixed cache length)."""
    with meta_device():
        model = Backbone(genome, width, vocab_size, config, tie_embeddings)
    seen: set[int] = {id(p) for p in model.embed.parameters()}
    leaders, sources = genome.featurizer_leaders(), genome.feature_sources()
    slots = []
    for index, liv in enumerate(model.livs):
        fresh = [p for p in liv.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        norm = sum(p.numel() for p in model.norms[index].parameters())  # none, a gain, or gain and bias
        slots.append(SlotReport(
            slot=index + 1,
            name=liv.name,
            family=liv.spec.family,
            featurizer_leader=_other(leaders[index], index),
            feature_source=_other(sources[index], index),
            params=sum(p.numel() for p in fresh) + norm,
            cache_bytes=liv.cache_bytes(seq_len),
        ))  # fmt: skip
    return SizeReport(
        canonical=genome.canonical().text(),
        hash=genome.hash(),
        width=width,
        vocab_size=vocab_size,
        seq_len=seq_len,
        params=model.num_params(),
        params_non_embedding=model.num_params(non_embedding=True),
        cache_bytes=model.cache_bytes(seq_len),
        slots=tuple(slots),
    )


def _other(leader: int | None, index: int) -> int | None:
    return None if leader is None or leader == index else leader + 1


@torch.no_grad()
def measured_cache_bytes(model: Backbone, seq_len: int, bytes_per_value: int = 2) -> int:
    """Decode ``seq_len`` tokens and measure the real state tensors, rescaled to ``bytes_per_value``."""
    state = model.init_state(1)
    token = torch.zeros(1, dtype=torch.long, device=model.embed.weight.device)
    for _ in range(seq_len):
        _, state = model.step(token, state)
    element = model.embed.weight.element_size()
    return state_nbytes(state) * bytes_per_value // element


def training_flops_per_token(model: Backbone, seq_len: int) -> float:
    """Training FLOPs per token, PaLM's count: 6 x the parameters each token is multiplied by, plus 12 x width x
    ``seq_len`` per attention map (two per differential attention slot).

    Parameters are counted per use (a slot that ties its featurizer to another still computes with it), the
    tied head once more; norms, convolutions and scans are left out, and attention is counted full rather than
    causal, as nanoGPT and PaLM do, so figures compare with theirs (and flatter MFU a little).
    """
    per_use = sum(p.numel() for liv in model.livs for p in liv.parameters() if p.dim() >= 2)
    attention_maps = sum((2 if liv.spec.differential else 1) for liv in model.livs if liv.spec.family == "attention")
    return 6 * (per_use + model.vocab_size * model.width) + 12 * attention_maps * model.width * seq_len
