"""What one LIV class costs at a width: its parameters and its inference cache (``starlab liv list/build``).

Sizes are counted on the meta device: a layer is built with shapes but no storage, so the counts are exact at
any width (768, or a paper-scale 4096) and take no time or memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from starlab.liv.build import build_liv, check_width
from starlab.liv.operator import get_class, parse_operator, repair_operator, valid_operator_genomes
from starlab.liv.pool import LIVClass, classes


@dataclass(frozen=True)
class LIVSize:
    """One class's size at a width.

    Attributes:
        id: the pool id (``None`` for a class composed from an operator genome outside the pool).
        name, operator_genome, family, kind, description: the class, as the pool names it.
        params: parameters of one layer of the class.
        cache_bytes: its decoding state for one sequence after the given number of tokens, in 16-bit values.
    """

    id: int | None
    name: str
    operator_genome: str
    family: str
    kind: str
    params: int
    cache_bytes: int
    description: str

    @classmethod
    def of(cls, spec: LIVClass, width: int, seq_len: int) -> LIVSize:
        """``spec``'s size at ``width``, its cache after ``seq_len`` tokens."""
        with torch.device("meta"):  # shapes without storage: exact counts at any width, instantly
            layer = build_liv(spec, width)
        return cls(
            id=spec.id or None, name=spec.name, operator_genome=spec.operator_genome_text, family=spec.family,
            kind=spec.kind, params=sum(p.numel() for p in layer.parameters()), cache_bytes=layer.cache_bytes(seq_len),
            description=spec.description,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def liv_sizes(width: int, seq_len: int, operators: bool = False) -> list[LIVSize]:
    """Every pool class (with ``operators``, every valid operator genome instead) at ``width``."""
    width = check_width(width)
    specs = [get_class(genes) for genes in valid_operator_genomes()] if operators else classes()
    return [LIVSize.of(spec, width, seq_len) for spec in specs]


def liv_size(operator: str, width: int, seq_len: int, repair: bool = False) -> LIVSize:
    """The class written as ``operator`` (``[1,2,1,1,3]``, a pool id or name) at ``width``; with ``repair`` an
    invalid operator genome is replaced by its nearest valid one instead of refused."""
    width, key = check_width(width), parse_operator(operator)
    if repair and not isinstance(key, str):
        key = repair_operator(key)
    return LIVSize.of(get_class(key), width, seq_len)
