"""Gated convolutions (GConv-1, GConv-2): ``T_ij = C_i K_{i-j} B_j``, diagonal channel mixing.

Both compute ``u = B * v`` from the input, convolve it causally along time, and gate the result with ``C``:
``y = out_proj(C * (K * u))``. GConv-1 has an explicit kernel of a few taps (as LFM2's short-conv block);
GConv-2 has a kernel as long as the sequence, produced by a Hyena implicit filter and applied by FFT.
Cached side: ``u`` (its last ``taps - 1`` values for GConv-1, its whole history for GConv-2).
Own side: the gate ``C`` and the kernel.

Operator genes (:mod:`starlab.liv.operator`) vary two parts: ``channel_mixing`` 3 gives every head of
``head_dim`` channels one kernel and 2 one kernel for all channels (the pool's: one per channel), and
``nonlinearity`` 4 gates with ``SiLU(C)`` instead of ``C``.
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


def kernel_channels(spec: LIVClass, width: int, config: LIVConfig) -> int:
    """Distinct kernels of a convolution class: one per channel, per head of channels, or one."""
    channel_mixing = spec.settings.get("channel_mixing", 1)
    if channel_mixing == 1:
        return width
    return split_heads(width, config.head_dim)[0] if channel_mixing == 3 else 1


def per_channel(kernel: Tensor, width: int) -> Tensor:
    """A ``(kernels, taps)`` kernel as one row per channel (each kernel serves ``width / kernels`` channels)."""
    return kernel if kernel.shape[0] == width else kernel.repeat_interleave(width // kernel.shape[0], dim=0)


def gate(spec: LIVClass, c: Tensor) -> Tensor:
    """The convolution's output gate: ``C``, or ``SiLU(C)`` for ``nonlinearity`` 4."""
    return F.silu(c) if spec.settings.get("nonlinearity", 1) == 4 else c


# --------------------------------------------------------------------------------------------------
# GConv-1: gated short convolution
# --------------------------------------------------------------------------------------------------


class ShortConvFeaturizer(nn.Module):
    """``C`` projection and the explicit kernel (own side); ``B``/``v`` projection (cached side)."""

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, cached: bool = True) -> None:
        super().__init__()
        self.c_proj = nn.Linear(width, width, bias=False)
        self.kernel = conv_weight(kernel_channels(spec, width, config), spec.settings["kernel_size"])
        self.bv_proj = nn.Linear(width, 2 * width, bias=False) if cached else None


class ShortConv(FeaturizedLIV):
    Featurizer = ShortConvFeaturizer

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, **kwargs) -> None:
        super().__init__(spec, width, config, mix_width=width, **kwargs)
        self.taps = spec.settings["kernel_size"]

    def own_features(self, x: Tensor) -> Tensor:
        return gate(self.spec, self.featurizer.c_proj(x))

    def cached_features(self, x: Tensor) -> Tensor:
        b, v = self.featurizer.bv_proj(x).chunk(2, dim=-1)
        return b * v

    def mix(self, c: Tensor, u: Tensor) -> Tensor:
        return c * ops.causal_depthwise_conv(u, per_channel(self.featurizer.kernel, self.width))

    def init_cached_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"u": conv_window(batch, self.taps, self.width, device, dtype)}

    def own_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        return self.own_features(x_t), state

    def cached_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """Feature for this step: the full window of the last ``taps`` values of ``u``."""
        window = torch.cat((state["u"], self.cached_features(x_t)[:, None]), dim=1)
        return window, {"u": window[:, 1:]}

    def mix_step(self, c: Tensor, window: Tensor) -> Tensor:
        return c * (window * per_channel(self.featurizer.kernel, self.width).t()).sum(dim=1)

    def cached_cache_values(self, seq_len: int) -> int:
        return conv_window_values(self.taps, self.width)


# --------------------------------------------------------------------------------------------------
# GConv-2: Hyena-style gated long convolution
# --------------------------------------------------------------------------------------------------


class Sin(nn.Module):
    """``sin(w * x)`` with a learnable frequency per unit: Hyena's filter activation."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.freq = nn.Parameter(torch.ones(units))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """A long kernel as a function of position: ``h[c, t] = MLP(z(t))[c] * exp(-alpha_c t / L_ref)``.

    ``z(t)`` holds ``t / L_ref`` and sines/cosines of ``t`` at geometric frequencies from 1 to ``1/L_ref``
    radians per token, so the filter can be sharp near the current token and smooth far away. Positions are
    absolute (not divided by the sequence length, as Hyena does), which makes the kernel the same function
    in training and decoding at any length. The exponential window uses Hyena's decay range: channel ``c``
    reaches 1% of its start after between 0.3 and 1.5 reference lengths.
    """

    def __init__(self, channels: int, hidden: int, bands: int, reference_length: int) -> None:
        super().__init__()
        self.reference_length = reference_length
        freqs = computed_on_cpu(lambda: reference_length ** (-torch.arange(bands) / max(bands - 1, 1)), (bands,))
        self.register_buffer("freqs", freqs, False)
        slow, fast = math.log(1e-2) / 1.5, math.log(1e-2) / 0.3
        decay = computed_on_cpu(lambda: torch.linspace(-slow, -fast, channels), (channels,))
        self.register_buffer("decay", decay, False)
        self.mlp = nn.Sequential(
            nn.Linear(1 + 2 * bands, hidden),
            Sin(hidden),
            nn.Linear(hidden, hidden),
            Sin(hidden),
            nn.Linear(hidden, channels, bias=False),
        )
        self._memo: tuple[tuple, Tensor] | None = None

    def compute(self, length: int) -> Tensor:
        """The kernel ``(channels, length)`` for positions ``0 .. length-1``."""
        t = torch.arange(length, device=self.freqs.device, dtype=torch.float32)
        angles = t[:, None] * self.freqs[None, :]
        z = torch.cat(((t / self.reference_length)[:, None], angles.sin(), angles.cos()), dim=-1)
        window = torch.exp(-(t / self.reference_length)[None, :] * self.decay[:, None])
        return self.mlp(z.to(self.decay.dtype)).t() * window

    def forward(self, length: int) -> Tensor:
        """``compute(length)``, memoised while gradients are off (decoding asks for one more position a step)."""
        if torch.is_grad_enabled():
            return self.compute(length)
        key = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self._memo is None or self._memo[0] != key or self._memo[1].shape[-1] < length:
            self._memo = (key, self.compute(max(64, 1 << (length - 1).bit_length())))
        return self._memo[1][:, :length]


class LongConvFeaturizer(nn.Module):
    """``C`` projection, implicit filter and skip (own side); ``B``/``v`` projection (cached side).

    As in Hyena, the projections pass through a causal depthwise short conv before gating.
    """

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, cached: bool = True) -> None:
        super().__init__()
        taps = spec.settings.get("conv_size", 3)
        self.c_proj = nn.Linear(width, width, bias=False)
        self.c_conv = conv_weight(width, taps) if taps else None
        kernels = kernel_channels(spec, width, config)
        self.filter = ImplicitFilter(kernels, config.filter_hidden, config.filter_bands, config.filter_reference_length)
        self.skip = nn.Parameter(torch.zeros(width))
        self.bv_proj = nn.Linear(width, 2 * width, bias=False) if cached else None
        self.bv_conv = conv_weight(2 * width, taps) if cached and taps else None


class LongConv(FeaturizedLIV):
    Featurizer = LongConvFeaturizer

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, **kwargs) -> None:
        super().__init__(spec, width, config, mix_width=width, **kwargs)
        self.taps = spec.settings.get("conv_size", 3)
        #: the long convolution; benchmarks swap in ``ops.direct_causal_conv`` to time the O(L^2) version
        self.long_conv = ops.fft_causal_conv

    def own_features(self, x: Tensor) -> Tensor:
        return gate(self.spec, maybe_conv(self.featurizer.c_proj(x), self.featurizer.c_conv))

    def cached_features(self, x: Tensor) -> Tensor:
        b, v = maybe_conv(self.featurizer.bv_proj(x), self.featurizer.bv_conv).chunk(2, dim=-1)
        return b * v

    def _kernel(self, length: int) -> Tensor:
        return per_channel(self.featurizer.filter(length), self.width)

    def mix(self, c: Tensor, u: Tensor) -> Tensor:
        return c * (self.long_conv(u, self._kernel(u.shape[1])) + self.featurizer.skip * u)

    def init_own_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {"c_conv": conv_window(batch, self.taps, self.width, device, dtype)} if self.taps else {}

    def init_cached_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        state = {"u": torch.zeros(batch, 0, self.width, device=device, dtype=dtype)}
        if self.taps:
            state["bv_conv"] = conv_window(batch, self.taps, 2 * self.width, device, dtype)
        return state

    def own_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        c_t, state = maybe_conv_step(self.featurizer.c_proj(x_t), self.featurizer.c_conv, state, "c_conv")
        return gate(self.spec, c_t), state

    def cached_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """Feature for this step: the whole history of ``u`` up to and including this token."""
        bv, state = maybe_conv_step(self.featurizer.bv_proj(x_t), self.featurizer.bv_conv, state, "bv_conv")
        b, v = bv.chunk(2, dim=-1)
        history = torch.cat((state["u"], (b * v)[:, None]), dim=1)
        return history, {**state, "u": history}

    def mix_step(self, c: Tensor, history: Tensor) -> Tensor:
        kernel = self._kernel(history.shape[1])
        return c * (ops.long_conv_step(history, kernel) + self.featurizer.skip * history[:, -1])

    def own_cache_values(self, seq_len: int) -> int:
        return conv_window_values(self.taps, self.width)

    def cached_cache_values(self, seq_len: int) -> int:
        return seq_len * self.width + conv_window_values(self.taps, 2 * self.width)
