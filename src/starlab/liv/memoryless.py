"""The gated memoryless LIV (GMemless): diagonal token mixing ``T_ii = sigma(C_i)``, dense channels.

A SwiGLU MLP: two feature groups (gate, value) from one projection, ``y = down(silu(gate) * value)``.
No token interacts with another, so it has no cache and nothing to share but its featurizer weights.
``LIVConfig(mlp="gelu")`` makes it GPT-2's MLP instead, ``y = down(gelu_tanh(up(x)))`` (one feature group).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from starlab.liv import ops
from starlab.liv.base import FeaturizedLIV, State
from starlab.liv.config import MLPS, LIVConfig, add_bias
from starlab.liv.pool import LIVClass


def hidden_width(width: int, config: LIVConfig) -> int:
    """SwiGLU hidden size: ``mlp_ratio * width`` rounded to a multiple of ``mlp_multiple``."""
    multiple = config.mlp_multiple
    return max(multiple, round(config.mlp_ratio * width / multiple) * multiple)


class MemorylessFeaturizer(nn.Module):
    """Gate and value projections, or GPT-2's up projection (own side; there is no cached side)."""

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, cached: bool = True) -> None:
        super().__init__()
        if config.mlp not in MLPS:
            raise ValueError(f"config.mlp must be one of {', '.join(MLPS)}, got {config.mlp!r}")
        hidden = hidden_width(width, config)
        if config.mlp == "gelu":
            self.up = nn.Linear(width, hidden, bias=config.bias)
        else:
            self.gate_value = nn.Linear(width, 2 * hidden, bias=config.bias)


class Memoryless(FeaturizedLIV):
    Featurizer = MemorylessFeaturizer

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, **kwargs) -> None:
        super().__init__(spec, width, config, mix_width=hidden_width(width, config), **kwargs)
        if config.bias:
            add_bias(self.out_proj)

    def own_features(self, x: Tensor) -> Tensor:
        if self.config.mlp == "gelu":
            return self.featurizer.up(x)
        return self.featurizer.gate_value(x)

    def cached_features(self, x: Tensor) -> None:
        return None

    def mix(self, features: Tensor, cached: None) -> Tensor:
        if self.config.mlp == "gelu":
            return F.gelu(features, approximate="tanh")
        gate, value = features.chunk(2, dim=-1)
        if self.spec.settings.get("nonlinearity", 4) == 1:  # operator gene n=1: a bilinear GLU, no activation
            return gate * value
        return ops.swiglu(gate, value)

    def own_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        return self.own_features(x_t), state

    def cached_step(self, x_t: Tensor, state: State) -> tuple[None, State]:
        return None, state

    def mix_step(self, features: Tensor, cached: None) -> Tensor:
        return self.mix(features, cached)

    def init_own_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {}
