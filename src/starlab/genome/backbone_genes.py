"""Backbone genes: the block structure around the LIV slots (norm kind, norm position, residual form).

STAR fixes a pre-norm residual with RMSNorm (docs/genome.md); its reviewers asked for the structure itself to be
searchable. Three genes, each a small integer like the slot genes, so a search vector holds them as it holds
the rest of the genome:

1. ``norm``      1 RMSNorm, 2 LayerNorm (with bias), 3 none
2. ``position``  1 pre-norm ``x + f(norm(x))``, 2 post-norm ``norm(x + f(x))``
3. ``residual``  1 sequential (one slot after the other), 2 parallel: consecutive slot pairs read the same
   input and both add to it (GPT-J's ``x + mixer(norm(x)) + mlp(norm(x))``); an odd last slot stays alone

The default ``(1, 1, 1)`` is the backbone STAR and starlab had before backbone genes existed; its genome text
has no prefix, so every genome written before reads and hashes as it did. Other values are written as a
prefix: ``b212:11111-91111``.
"""

from __future__ import annotations

from typing import NamedTuple

NORMS = {1: "rmsnorm", 2: "layernorm", 3: "none"}
POSITIONS = {1: "pre", 2: "post"}
RESIDUALS = {1: "sequential", 2: "parallel"}
BACKBONE_FIELDS = ("norm", "position", "residual")
#: inclusive (low, high) of each backbone gene
BACKBONE_GENE_RANGES = ((1, 3), (1, 2), (1, 2))
PREFIX = "b"


class BackboneGenes(NamedTuple):
    """The three backbone genes; the default is STAR's pre-norm sequential RMSNorm residual."""

    norm: int = 1
    position: int = 1
    residual: int = 1

    @classmethod
    def checked(cls, values) -> BackboneGenes:
        """Three integers in range, or a one-line ``ValueError`` naming the gene and its allowed values."""
        values = tuple(values)
        if len(values) != 3:
            raise ValueError(f"backbone genes: expected 3 integers ({', '.join(BACKBONE_FIELDS)}), got {values!r}")
        names = (NORMS, POSITIONS, RESIDUALS)
        for field, value, allowed in zip(BACKBONE_FIELDS, values, names, strict=True):
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                options = ", ".join(f"{k} {v}" for k, v in allowed.items())
                raise ValueError(f"backbone gene {field!r}: expected one of {options}; got {value!r}")
        return cls(*values)

    @classmethod
    def parse(cls, text: str) -> BackboneGenes:
        """``b212`` -> ``BackboneGenes(2, 1, 2)``."""
        digits = text[len(PREFIX) :]
        if not text.startswith(PREFIX) or len(digits) != 3 or not digits.isascii() or not digits.isdigit():
            raise ValueError(f"backbone genes must be written b<norm><position><residual> (e.g. b212), got {text!r}")
        return cls.checked(int(d) for d in digits)

    @property
    def is_default(self) -> bool:
        return self == BackboneGenes()

    def text(self) -> str:
        return PREFIX + "".join(map(str, self))

    def describe(self) -> str:
        """``layernorm, post-norm, parallel residual``."""
        return f"{NORMS[self.norm]}, {POSITIONS[self.position]}-norm, {RESIDUALS[self.residual]} residual"
