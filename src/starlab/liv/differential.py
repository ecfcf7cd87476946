"""Differential LIVs (classes 10-17): ``y = out_proj(mix_a(x) - lambda * mix_b(x))``.

In the spirit of the Differential Transformer: two independent sets of feature groups feed two token
mixers of the same kind, and a learnable per-channel weight ``lambda`` (init ``diff_lambda_init``) subtracts
the second, cancelling what both attend to in common. Both branches keep their own cache, so a
differential class holds twice its base class's state. The featurizer is the pair of branch featurizers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from starlab.liv.base import LIV, FeaturizedLIV, State
from starlab.liv.config import LIVConfig
from starlab.liv.operator import get_class
from starlab.liv.pool import LIVClass


class Differential(LIV):
    def __init__(
        self,
        spec: LIVClass,
        width: int,
        config: LIVConfig,
        *,
        branch_type: type[FeaturizedLIV],
        featurizer: tuple[nn.Module, nn.Module] | None = None,
        reuse_features: bool = False,
    ) -> None:
        super().__init__(spec, width, config, reuse_features)
        base = get_class(spec.base)
        featurizer_a, featurizer_b = featurizer or (None, None)
        kwargs = {"reuse_features": reuse_features, "project": False}
        self.branch_a = branch_type(base, width, config, featurizer=featurizer_a, **kwargs)
        self.branch_b = branch_type(base, width, config, featurizer=featurizer_b, **kwargs)
        mix_width = self.branch_a.mix_width
        self.lam = nn.Parameter(torch.full((mix_width,), config.diff_lambda_init))
        self.out_proj = nn.Linear(mix_width, width, bias=False)

    @property
    def featurizer(self) -> tuple[nn.Module, nn.Module]:
        return self.branch_a.featurizer, self.branch_b.featurizer

    @property
    def name(self) -> str:
        return self.spec.name

    def _combine(self, y_a: Tensor, y_b: Tensor) -> Tensor:
        return self.out_proj(y_a - self.lam * y_b)

    def _forward_features(self, x: Tensor, shared: Any) -> tuple[Tensor, Any]:
        shared_a, shared_b = shared or (None, None)
        y_a, cached_a = self.branch_a._forward_features(x, shared_a)
        y_b, cached_b = self.branch_b._forward_features(x, shared_b)
        return self._combine(y_a, y_b), (cached_a, cached_b)

    def _step_features(self, x_t: Tensor, state: State, shared: Any) -> tuple[Tensor, State, Any]:
        shared_a, shared_b = shared or (None, None)
        y_a, state_a, cached_a = self.branch_a._step_features(x_t, state["a"], shared_a)
        y_b, state_b, cached_b = self.branch_b._step_features(x_t, state["b"], shared_b)
        return self._combine(y_a, y_b), {"a": state_a, "b": state_b}, (cached_a, cached_b)

    def _init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {
            "a": self.branch_a._init_state(batch, device, dtype),
            "b": self.branch_b._init_state(batch, device, dtype),
        }

    def _cache_values(self, seq_len: int) -> int:
        return self.branch_a._cache_values(seq_len) + self.branch_b._cache_values(seq_len)
