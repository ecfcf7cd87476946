"""Hyper-parameters shared by every LIV of a model (fixed for a whole search, not evolved)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: channel mixers of the memoryless LIV (GMemless): STAR's SwiGLU, or GPT-2's GELU MLP
MLPS = ("swiglu", "gelu")


@dataclass(frozen=True)
class LIVConfig:
    """Sizes and constants the paper leaves open; our defaults are documented in ``docs/liv.md``.

    Attributes:
        head_dim: attention head size; small widths get fewer, not narrower, heads (at least one).
        rope_base: rotary embedding base.
        recurrence_head_dim: channels that share one decay rate in the selective recurrences.
        scan_chunk: chunk length of the parallel scan (speed only; results do not depend on it).
        mlp_ratio, mlp_multiple: SwiGLU hidden size = round(mlp_ratio * width) to a multiple of this.
        filter_hidden, filter_bands: size of the Hyena implicit-filter MLP and of its positional features.
        filter_reference_length: positions are measured in units of this many tokens, so the implicit
            filter is a fixed function of absolute position (identical in training and decoding).
        diff_lambda_init: initial weight of the subtracted branch of differential classes.
        bias: biases on the projections of attention and memoryless layers (GPT-2 has them, STAR not).
        rope: rotary positions in attention; without them positions come from the backbone's learned
            position embeddings (GPT-2).
        heads: a fixed number of attention heads (head size ``width / heads``, GPT-2's 4 at every width),
            rounded up to a multiple of a grouped-query class's ``kv_repeat``; None: as many heads of
            ``head_dim`` channels as the width holds.
        mlp: the memoryless layer's channel mixer: ``"swiglu"`` (``down(silu(gate) * value)``) or ``"gelu"``
            (GPT-2's ``down(gelu_tanh(up(x)))``); both have ``hidden_width`` hidden channels.
    """

    head_dim: int = 64
    rope_base: float = 10_000.0
    recurrence_head_dim: int = 32
    scan_chunk: int = 64
    mlp_ratio: float = 8 / 3
    mlp_multiple: int = 8
    filter_hidden: int = 64
    filter_bands: int = 8
    filter_reference_length: int = 1024
    diff_lambda_init: float = 0.8
    bias: bool = False
    rope: bool = True
    heads: int | None = None
    mlp: str = "swiglu"


def split_heads(width: int, head_dim: int, multiple: int = 1) -> tuple[int, int]:
    """Number of heads and head size for ``width``.

    Aims for heads of ``head_dim`` channels; uses at least ``multiple`` heads, a multiple of ``multiple``,
    that divides ``width`` into even-sized heads (RoPE rotates channel pairs).
    """
    heads = max(width // head_dim, multiple)
    heads += (-heads) % multiple
    while heads <= width:
        if width % heads == 0 and (width // heads) % 2 == 0:
            return heads, width // heads
        heads += multiple
    raise ValueError(f"width {width} cannot be split into a multiple of {multiple} even-sized heads")


def add_bias(linear: nn.Linear | None) -> None:
    """Give an output projection a zero bias (the base LIV builds them without; GPT-2's have one)."""
    if linear is not None:
        weight = linear.weight
        linear.bias = nn.Parameter(torch.zeros(linear.out_features, device=weight.device, dtype=weight.dtype))
