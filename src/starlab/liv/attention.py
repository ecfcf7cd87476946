"""Softmax attention LIVs (SA-1..SA-4): ``T_ij = softmax(C_i B_j)``, grouped channel mixing (heads).

Featurizer: linear projections, optionally followed by a causal depthwise short convolution (SA-2); RoPE on
queries and keys; ``kv_repeat`` query heads per key/value head (grouped-query attention, SA-3/SA-4).
GPT-2's attention is the same class with ``LIVConfig(bias=True, rope=False, heads=4)``.
Cached side: keys (after RoPE) and values. Own side: queries.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from starlab.liv import ops
from starlab.liv.base import FeaturizedLIV, State
from starlab.liv.config import LIVConfig, add_bias, split_heads
from starlab.liv.pool import LIVClass
from starlab.liv.shortconv import conv_weight, conv_window, conv_window_values, maybe_conv, maybe_conv_step


def attention_shape(spec: LIVClass, width: int, config: LIVConfig) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim) for this class at this width."""
    repeat = spec.settings.get("kv_repeat", 1)
    if spec.settings.get("channel_mixing") == 2:  # operator gene c=2: one head mixes all channels
        return 1, 1, width
    if config.heads is None:
        heads, head_dim = split_heads(width, config.head_dim, multiple=repeat)
        return heads, heads // repeat, head_dim
    heads = config.heads + (-config.heads) % repeat  # grouped-query classes: a multiple of their groups
    if width % heads or (config.rope and (width // heads) % 2):
        sizes = "even-sized heads (RoPE rotates channel pairs)" if config.rope else "equal heads"
        raise ValueError(f"config.heads={config.heads} cannot split width {width} into {heads} {sizes} ({spec.name})")
    return heads, heads // repeat, width // heads


class AttentionFeaturizer(nn.Module):
    """Q projection (own side) and K/V projection (cached side), each with an optional short conv."""

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, cached: bool = True) -> None:
        super().__init__()
        _, kv_heads, head_dim = attention_shape(spec, width, config)
        conv = spec.settings.get("qkv_conv", 0)
        self.q_proj = nn.Linear(width, width, bias=config.bias)
        self.q_conv = conv_weight(width, conv) if conv else None
        self.kv_proj = nn.Linear(width, 2 * kv_heads * head_dim, bias=config.bias) if cached else None
        self.kv_conv = conv_weight(2 * kv_heads * head_dim, conv) if cached and conv else None


class Attention(FeaturizedLIV):
    Featurizer = AttentionFeaturizer

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, **kwargs) -> None:
        super().__init__(spec, width, config, mix_width=width, **kwargs)
        self.heads, self.kv_heads, self.head_dim = attention_shape(spec, width, config)
        self.conv_size = spec.settings.get("qkv_conv", 0)
        if config.bias:
            add_bias(self.out_proj)

    # (batch, length, heads * dim) <-> (batch, heads, length, dim)
    def _split(self, x: Tensor, heads: int) -> Tensor:
        return x.unflatten(-1, (heads, self.head_dim)).transpose(-3, -2)

    def _rope(self, x: Tensor, start: int) -> Tensor:
        if not self.config.rope:
            return x
        positions = torch.arange(start, start + x.shape[-2], device=x.device)
        cos, sin = ops.rope_angles(positions, self.head_dim, self.config.rope_base)
        return ops.apply_rope(x, cos, sin)

    def _keys_values(self, kv: Tensor, start: int) -> tuple[Tensor, Tensor]:
        k, v = kv.chunk(2, dim=-1)
        return self._rope(self._split(k, self.kv_heads), start), self._split(v, self.kv_heads)

    # ---- parallel ------------------------------------------------------------------------------------
    def own_features(self, x: Tensor) -> Tensor:
        f = self.featurizer
        return self._split(maybe_conv(f.q_proj(x), f.q_conv), self.heads)

    def cached_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.featurizer
        return self._keys_values(maybe_conv(f.kv_proj(x), f.kv_conv), start=0)

    def mix(self, q: Tensor, cached: tuple[Tensor, Tensor]) -> Tensor:
        k, v = cached
        q = self._rope(q, start=k.shape[-2] - q.shape[-2])
        return ops.causal_attention(q, k, v).transpose(1, 2).flatten(-2)

    # ---- recurrent -----------------------------------------------------------------------------------
    def init_own_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        if not self.conv_size:
            return {}
        return {"q_conv": conv_window(batch, self.conv_size, self.width, device, dtype)}

    def init_cached_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        empty = torch.zeros(batch, self.kv_heads, 0, self.head_dim, device=device, dtype=dtype)
        state = {"k": empty, "v": empty.clone()}
        if self.conv_size:
            kv_width = 2 * self.kv_heads * self.head_dim
            state["kv_conv"] = conv_window(batch, self.conv_size, kv_width, device, dtype)
        return state

    def own_step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        q_t, state = maybe_conv_step(self.featurizer.q_proj(x_t), self.featurizer.q_conv, state, "q_conv")
        return self._split(q_t[:, None], self.heads), state

    def cached_step(self, x_t: Tensor, state: State) -> tuple[tuple[Tensor, Tensor], State]:
        f = self.featurizer
        kv_t, state = maybe_conv_step(f.kv_proj(x_t), f.kv_conv, state, "kv_conv")
        k_t, v_t = self._keys_values(kv_t[:, None], start=state["k"].shape[-2])
        k, v = torch.cat((state["k"], k_t), dim=-2), torch.cat((state["v"], v_t), dim=-2)
        return (k, v), {**state, "k": k, "v": v}

    def mix_step(self, q: Tensor, cached: tuple[Tensor, Tensor]) -> Tensor:
        return self.mix(q, cached)[:, 0]

    # ---- cache size ----------------------------------------------------------------------------------
    def own_cache_values(self, seq_len: int) -> int:
        return conv_window_values(self.conv_size, self.width)

    def cached_cache_values(self, seq_len: int) -> int:
        kv_width = 2 * self.kv_heads * self.head_dim
        return seq_len * kv_width + conv_window_values(self.conv_size, kv_width)
