"""Turn a pool entry into a layer: the only place that maps a class's ``kind`` to its implementation."""

from __future__ import annotations

from typing import Any

from starlab.liv.attention import Attention
from starlab.liv.base import LIV, FeaturizedLIV
from starlab.liv.config import LIVConfig
from starlab.liv.convolution import LongConv, ShortConv
from starlab.liv.differential import Differential
from starlab.liv.linear_attention import LinearAttention
from starlab.liv.memoryless import Memoryless
from starlab.liv.operator import ClassKey, get_class
from starlab.liv.pool import LIVClass
from starlab.liv.recurrence import Recurrence

#: Layer implementation of each kind named in the pool.
KINDS: dict[str, type[FeaturizedLIV]] = {
    "attention": Attention,
    "linear_attention": LinearAttention,
    "recurrence": Recurrence,
    "short_conv": ShortConv,
    "long_conv": LongConv,
    "memoryless": Memoryless,
}


class TooLarge(ValueError):
    """A layer whose tensors would hold more elements than a 64-bit size counts (seen on the meta device, where
    any width builds until the element count overflows)."""


def _too_large(spec: LIVClass, width: int, error: RuntimeError) -> TooLarge:
    return TooLarge(f"{spec.name} at width {width} cannot be built: its tensors would exceed 64-bit sizes ({error})")


def check_width(width: Any) -> int:
    """Model widths are positive multiples of 8 (heads, state groups and SwiGLU sizes divide evenly)."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 8 or width % 8:
        raise ValueError(f"width must be a positive multiple of 8, got {width!r}")
    return width


def build_featurizer(
    liv_class: LIVClass | ClassKey | str, width: int, config: LIVConfig | None = None, cached: bool = True
):
    """A fresh featurizer for a class (a pair of them for a differential class), to share between layers.

    ``cached=False`` builds only the own side, for groups whose members all reuse an earlier layer's features.
    """
    spec = liv_class if isinstance(liv_class, LIVClass) else get_class(liv_class)
    width, config = check_width(width), config or LIVConfig()
    featurizer_type = KINDS[spec.kind].Featurizer
    try:
        if spec.differential:
            base = get_class(spec.base)
            return tuple(featurizer_type(base, width, config, cached=cached) for _ in range(2))
        return featurizer_type(spec, width, config, cached=cached)
    except RuntimeError as error:
        if "overflow" not in str(error).lower():
            raise
        raise _too_large(spec, width, error) from None


def build_liv(
    liv_class: LIVClass | ClassKey | str,
    width: int,
    config: LIVConfig | None = None,
    *,
    featurizer: Any = None,
    reuse_features: bool = False,
) -> LIV:
    """Build the layer for a class (by entry, pool id or name, or operator genome) at ``width``.

    ``featurizer`` passes an existing featurizer (featurizer sharing); ``reuse_features`` builds a layer
    without a cached side that mixes an earlier layer's cached features (feature-group sharing).
    """
    spec = liv_class if isinstance(liv_class, LIVClass) else get_class(liv_class)
    width, config = check_width(width), config or LIVConfig()
    layer_type = KINDS[spec.kind]
    try:
        if spec.differential:
            return Differential(
                spec, width, config, branch_type=layer_type, featurizer=featurizer, reuse_features=reuse_features
            )
        return layer_type(spec, width, config, featurizer=featurizer, reuse_features=reuse_features)
    except RuntimeError as error:  # "Storage size calculation overflowed": a width no tensor can have
        if "overflow" not in str(error).lower():
            raise
        raise _too_large(spec, width, error) from None
