"""Hyper-parameters shared by every LIV of a model (fixed for a whole search, not evolved)."""

from __future__ import annotations

from dataclasses import dataclass


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
