"""What defines a backbone's architecture, as one checked value.

The genome, width, vocabulary, LIV settings, tied head and learned positions travel together: into
``Backbone``, its memory check, a flavour's build, ``config.json`` and the Hugging Face config. A
:class:`BackboneSpec` carries them as one frozen value whose construction runs every check, so a function that
takes one knows its settings are valid (and its genome canonical) without checking them again, and the checks
live here rather than at each place the six values used to be passed loose.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from starlab.genome import Genome
from starlab.liv import LIVConfig, check_width
from starlab.model.validation import (
    check_genome,
    check_liv_config,
    check_max_positions,
    check_tie_embeddings,
    check_vocab_size,
)

__all__ = ["BackboneSpec", "check_settings"]


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's architecture: ``Backbone.from_spec(spec)`` builds it.

    Construction checks every field (one-line ``ValueError``s naming the setting) and normalises: the genome
    becomes canonical (relabelled group ids and no-op sharing build the same model), ``config=None`` becomes
    ``LIVConfig()``, and integers given for float LIV settings become floats.
    """

    genome: Genome
    width: int
    vocab_size: int
    config: LIVConfig = field(default_factory=LIVConfig)
    tie_embeddings: bool = True
    max_positions: int | None = None  # learned absolute positions (None: the LIVs carry their own)

    def __post_init__(self) -> None:
        genome = check_genome(self.genome)
        width, vocab_size, config, tie, positions = check_settings(
            self.width, self.vocab_size, self.config, self.tie_embeddings, self.max_positions
        )
        for name, value in (("genome", genome), ("width", width), ("vocab_size", vocab_size), ("config", config),
                            ("tie_embeddings", tie), ("max_positions", positions)):  # fmt: skip
            object.__setattr__(self, name, value)

    def embedding_params(self) -> int:
        """Parameters of the token embedding, the untied head and the learned positions."""
        rows = self.vocab_size * (1 if self.tie_embeddings else 2) + (self.max_positions or 0)
        return rows * self.width

    def to_json(self) -> dict[str, Any]:
        """The settings as ``config.json`` (and the Hugging Face config) write them, in their order."""
        return {
            "genome": self.genome.text(), "width": self.width, "vocab_size": self.vocab_size,
            "tie_embeddings": self.tie_embeddings, "max_positions": self.max_positions,
            "liv_config": asdict(self.config),
        }  # fmt: skip


def check_settings(
    width: Any, vocab_size: Any, config: Any, tie_embeddings: Any, max_positions: Any
) -> tuple[int, int, LIVConfig, bool, int | None]:
    """The checks of every setting but the genome (a bound over all genomes of a depth needs them alone)."""
    return (
        check_width(width), check_vocab_size(vocab_size), check_liv_config(LIVConfig() if config is None else config),
        check_tie_embeddings(tie_embeddings), check_max_positions(max_positions),
    )  # fmt: skip
