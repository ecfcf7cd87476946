"""Backbone flavours: named ways to build a genome's network, for protocols to select by name.

* ``star`` (the default): the genome as STAR builds it, RoPE attention, SwiGLU MLP, N(0, 1) embeddings.
* ``gpt2``: the network of *Algorithmic Capabilities of Random Transformers* (Zhong & Andreas 2024), which
  is Hugging Face's ``GPT2LMHeadModel``. With the transformer++ genome (SA-1 and GMemless alternating) it is
  that model exactly (``tests/test_gpt2.py`` copies the weights across and compares logits): pre-LayerNorm
  (backbone genes ``b211``), attention with biases and 4 heads and no RoPE, learned absolute positions, a GELU
  MLP of 4 x width with biases, an untied head without bias, and GPT-2's initialisation. On other genomes
  it gives their attention and MLP slots the same settings and initialises every Linear the GPT-2 way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from starlab.genome import BackboneGenes, Genome
from starlab.liv import LIVConfig
from starlab.model.backbone import Backbone
from starlab.model.spec import BackboneSpec


@dataclass(frozen=True)
class Flavour:
    """What a flavour changes in a genome's network.

    Attributes:
        genes: the backbone genes it builds with (``None``: the genome's own).
        liv: the LIVConfig settings it replaces.
        init: the backbone's initialisation (``starlab.model.backbone.INITS``).
        learned_positions: absolute position embeddings in front of the slots (its attention has no RoPE).
        untied: a separate unembedding, whatever the protocol would tie.
    """

    name: str
    description: str
    genes: BackboneGenes | None = None
    liv: dict[str, Any] = field(default_factory=dict)
    init: str = "star"
    learned_positions: bool = False
    untied: bool = False

    def genome(self, genome: Genome) -> Genome:
        """``genome`` with this flavour's backbone genes; one that has other genes of its own is refused."""
        if self.genes is None or genome.backbone == self.genes:
            return genome
        if not genome.backbone.is_default:
            raise ValueError(
                f"the {self.name} backbone builds with backbone genes {self.genes.text()}; genome "
                f"{genome.text()} has its own ({genome.backbone.text()}): give it without the prefix"
            )
        return dataclasses.replace(genome, backbone=self.genes)

    def config(self, config: LIVConfig) -> LIVConfig:
        return dataclasses.replace(config, **self.liv) if self.liv else config

    def apply(self, spec: BackboneSpec) -> BackboneSpec:
        """``spec`` in this flavour: its backbone genes, LIV settings and (un)tied head."""
        return dataclasses.replace(
            spec, genome=self.genome(spec.genome), config=self.config(spec.config),
            tie_embeddings=spec.tie_embeddings and not self.untied,
        )  # fmt: skip

    def build(self, spec: BackboneSpec) -> Backbone:
        """The backbone of ``spec`` in this flavour, with its initialisation."""
        return Backbone.from_spec(self.apply(spec), init=self.init)


FLAVOURS: dict[str, Flavour] = {
    "star": Flavour("star", "STAR's backbone: the genome's own norms, RoPE attention, SwiGLU, N(0, 1) embeddings"),
    "gpt2": Flavour(
        "gpt2",
        "Hugging Face GPT-2 (the random-transformer paper's network): pre-LayerNorm, biases, 4 heads, learned "
        "positions, GELU MLP 4d, untied head, GPT-2 initialisation",
        genes=BackboneGenes(norm=2, position=1, residual=1),
        liv={"bias": True, "rope": False, "heads": 4, "mlp": "gelu", "mlp_ratio": 4.0},
        init="gpt2",
        learned_positions=True,
        untied=True,
    ),
}


def get_flavour(name: str) -> Flavour:
    if name not in FLAVOURS:
        raise ValueError(f"unknown backbone {name!r}; backbones: {', '.join(FLAVOURS)}")
    return FLAVOURS[name]
