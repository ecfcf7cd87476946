"""The gated memoryless LIV (GMemless): diagonal token mixing ``T_ii = sigma(C_i)``, dense channels.

A SwiGLU MLP: two feature groups (gate, value) from one projection, ``y = down(silu(gate) * value)``.
No token interacts with another, so it has no cache and nothing to share but its featurizer weights.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from starlab.liv import ops
from starlab.liv.base import FeaturizedLIV, State
from starlab.liv.config import LIVConfig
from starlab.liv.pool import LIVClass


def hidden_width(width: int, config: LIVConfig) -> int:
    """SwiGLU hidden size: ``mlp_ratio * width`` rounded to a multiple of ``mlp_multiple``."""
    multiple = config.mlp_multiple
    return max(multiple, round(config.mlp_ratio * width / multiple) * multiple)


class MemorylessFeaturizer(nn.Module):
    """Gate and value projections (both own side; there is no cached side)."""

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, cached: bool = True) -> None:
        super().__init__()
        self.gate_value = nn.Linear(width, 2 * hidden_width(width, config), bias=False)


class Memoryless(FeaturizedLIV):
    Featurizer = MemorylessFeaturizer

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, **kwargs) -> None:
        super().__init__(spec, width, config, mix_width=hidden_width(width, config), **kwargs)

    def own_features(self, x: Tensor) -> Tensor:
        return self.featurizer.gate_value(x)

    def cached_features(self, x: Tensor) -> None:
        return None

    def mix(self, gate_value: Tensor, cached: None) -> Tensor:
        return ops.swiglu(*gate_value.chunk(2, dim=-1))

    def own_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        return self.own_features(x_t), state

    def cached_step(self, x_t: Tensor, state: State) -> tuple[None, State]:
        return None, state

    def mix_step(self, gate_value: Tensor, cached: None) -> Tensor:
        return self.mix(gate_value, cached)

    def init_own_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {}
