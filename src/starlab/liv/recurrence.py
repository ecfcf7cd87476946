"""Selective linear recurrences (Rec-1, Rec-2): ``T_ij = C_i A_{i-1} ... A_{j+1} B_j``, diagonal channels.

Per head of ``recurrence_head_dim`` channels, the state ``h (head_dim, N)`` with ``N`` the state expansion
follows ``h_t = a_t h_{t-1} + dt_t x_t B_t^T``, ``y_t = h_t C_t + D x_t``, where ``a_t = exp(-dt_t exp(A_log))``
and ``dt_t = softplus(.)`` depend on the input (selectivity), as in Mamba-2. Featurizer: one projection to
``x, B, dt`` and one to ``C``, with causal depthwise short convs and SiLU on ``x, B, C``.
Cached side: the scan inputs ``(x, dt, log a, B)`` — in decoding, the state ``h`` itself. Own side: ``C``.

Channel mixing (operator genes, :mod:`starlab.liv.operator`): the pool's classes share ``B`` and ``C`` across
heads (``channel_mixing`` 1); ``channel_mixing=3`` gives each head its own ``B`` and ``C`` (``N`` each, the
state stays ``(heads, head_dim, N)``); ``channel_mixing=2`` makes the whole width one head, one decay.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from starlab.liv import ops
from starlab.liv.base import FeaturizedLIV, State, computed_on_cpu
from starlab.liv.config import LIVConfig, split_heads
from starlab.liv.pool import LIVClass
from starlab.liv.shortconv import conv_weight, conv_window, conv_window_values, maybe_conv, maybe_conv_step


def _log_uniform(n: int, low: float, high: float) -> Tensor:
    return torch.empty(n).uniform_(math.log(low), math.log(high)).exp()


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


def recurrence_shape(spec: LIVClass, width: int, config: LIVConfig) -> tuple[int, int, int]:
    """(heads, head dim, channels of B and of C) for this class at this width."""
    channel_mixing, state = spec.settings.get("channel_mixing", 1), spec.settings["state_expansion"]
    if channel_mixing == 2:
        return 1, width, state
    heads, head_dim = split_heads(width, config.recurrence_head_dim)
    return heads, head_dim, heads * state if channel_mixing == 3 else state


class RecurrenceFeaturizer(nn.Module):
    """``C`` projection and skip ``D`` (own side); ``x, B, dt`` projection, decay rates (cached side)."""

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, cached: bool = True) -> None:
        super().__init__()
        heads, _, state = recurrence_shape(spec, width, config)
        conv = spec.settings.get("conv_size", 3)
        self.c_proj = nn.Linear(width, state, bias=False)
        self.c_conv = conv_weight(state, conv) if conv else None
        self.skip = nn.Parameter(torch.ones(heads))
        if cached:
            self.in_proj = nn.Linear(width, width + state + heads, bias=False)
            self.in_conv = conv_weight(width + state, conv) if conv else None
            # step sizes log-uniform in [1e-3, 1e-1] and decay rates uniform in [1, 16], as Mamba-2
            dt_bias = computed_on_cpu(lambda: _inverse_softplus(_log_uniform(heads, 1e-3, 1e-1)), (heads,))
            self.dt_bias = nn.Parameter(dt_bias)
            self.log_rate = nn.Parameter(computed_on_cpu(lambda: torch.empty(heads).uniform_(1, 16).log(), (heads,)))


class Recurrence(FeaturizedLIV):
    Featurizer = RecurrenceFeaturizer

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, **kwargs) -> None:
        super().__init__(spec, width, config, mix_width=width, **kwargs)
        self.heads, self.head_dim, self.features = recurrence_shape(spec, width, config)
        self.state_size = spec.settings["state_expansion"]
        #: B and C per head (``channel_mixing`` 3) rather than shared by all heads
        self.per_head = self.features != self.state_size
        self.conv_size = spec.settings.get("conv_size", 3)
        #: the parallel scan; benchmarks swap in ``ops.sequential_scan`` to time the loop it replaces
        self.scan = ops.chunked_scan

    def _scan_inputs(self, z: Tensor, xb: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Split the projected input into heads of x, step sizes, log-decays and B."""
        f = self.featurizer
        x, b = F.silu(xb).split([self.width, self.features], dim=-1)
        dt = F.softplus(z[..., self.width + self.features :] + f.dt_bias)
        log_a = -dt * f.log_rate.exp()
        return x.unflatten(-1, (self.heads, self.head_dim)), dt, log_a, self._heads_of(b)

    def _heads_of(self, features: Tensor) -> Tensor:
        """B or C as the scan takes them: shared ``(..., N)`` or per head ``(..., heads, N)``."""
        return features.unflatten(-1, (self.heads, self.state_size)) if self.per_head else features

    # ---- parallel ------------------------------------------------------------------------------------
    def own_features(self, x: Tensor) -> Tensor:
        return self._heads_of(F.silu(maybe_conv(self.featurizer.c_proj(x), self.featurizer.c_conv)))

    def cached_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z = self.featurizer.in_proj(x)
        xb = maybe_conv(z[..., : self.width + self.features], self.featurizer.in_conv)
        return self._scan_inputs(z, xb)

    def mix(self, c: Tensor, cached: tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
        x, dt, log_a, b = cached
        y, _ = self.scan(x * dt[..., None], log_a, b, c, chunk=self.config.scan_chunk, final_state=False)
        return (y + self.featurizer.skip[:, None] * x).flatten(-2)

    # ---- recurrent -----------------------------------------------------------------------------------
    def init_own_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        if not self.conv_size:
            return {}
        return {"c_conv": conv_window(batch, self.conv_size, self.features, device, dtype)}

    def init_cached_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        state = {"h": torch.zeros(batch, self.heads, self.head_dim, self.state_size, device=device, dtype=dtype)}
        if self.conv_size:
            state["in_conv"] = conv_window(batch, self.conv_size, self.width + self.features, device, dtype)
        return state

    def own_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        c_t, state = maybe_conv_step(self.featurizer.c_proj(x_t), self.featurizer.c_conv, state, "c_conv")
        return self._heads_of(F.silu(c_t)), state

    def cached_step(self, x_t: Tensor, state: State) -> tuple[tuple[Tensor, Tensor], State]:
        f = self.featurizer
        z = f.in_proj(x_t)
        xb, state = maybe_conv_step(z[..., : self.width + self.features], f.in_conv, state, "in_conv")
        x, dt, log_a, b = self._scan_inputs(z, xb)
        h = ops.scan_update(state["h"], x * dt[..., None], log_a, b)
        return (h, x), {**state, "h": h}

    def mix_step(self, c: Tensor, cached: tuple[Tensor, Tensor]) -> Tensor:
        h, x = cached
        return (ops.scan_readout(h, c) + self.featurizer.skip[:, None] * x).flatten(-2)

    # ---- cache size ----------------------------------------------------------------------------------
    def own_cache_values(self, seq_len: int) -> int:
        return conv_window_values(self.conv_size, self.features)

    def cached_cache_values(self, seq_len: int) -> int:
        return self.width * self.state_size + conv_window_values(self.conv_size, self.width + self.features)
