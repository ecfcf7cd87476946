"""Causal depthwise short convolutions as a featurizer step (SA-2, recurrences, Hyena projections).

The kernel is a plain parameter ``(channels, taps)``; the decode state is the window of the previous
``taps - 1`` inputs, kept in the layer's state dict under a key chosen by the caller.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from starlab.liv import ops

State = dict


def conv_weight(channels: int, taps: int) -> nn.Parameter:
    """A depthwise causal-conv kernel, initialised like ``nn.Conv1d`` (uniform in +-1/sqrt(taps))."""
    bound = 1 / math.sqrt(taps)
    return nn.Parameter(torch.empty(channels, taps).uniform_(-bound, bound))


def maybe_conv(x: Tensor, weight: nn.Parameter | None) -> Tensor:
    """Apply the conv if the featurizer has one (parallel form)."""
    return x if weight is None else ops.causal_depthwise_conv(x, weight)


def maybe_conv_step(x_t: Tensor, weight: nn.Parameter | None, state: State, key: str) -> tuple[Tensor, State]:
    """Decode-time twin of :func:`maybe_conv`; reads and replaces the window ``state[key]``."""
    if weight is None:
        return x_t, state
    y_t, window = ops.conv_step(state[key], x_t, weight)
    return y_t, {**state, key: window}


def conv_window(batch: int, taps: int, channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Initial (all-zero) decode window of a ``taps``-tap conv."""
    return torch.zeros(batch, taps - 1, channels, device=device, dtype=dtype)


def conv_window_values(taps: int, channels: int) -> int:
    """Values in the decode window of a ``taps``-tap conv over ``channels`` (0 when there is no conv)."""
    return (taps - 1) * channels if taps else 0
