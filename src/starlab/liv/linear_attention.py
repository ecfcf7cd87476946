"""Linear attention (operator genome ``[f,2,1,1,c]``, f a Q/K/V featurizer): ``T_ij = C_i B_j``, no softmax.

The taxonomy's low-rank row without the nonlinearity: ``y_i = sum_{j <= i} (q_i . k_j) v_j / sqrt(d)`` per head.
It uses the featurizer of the attention class ``f`` unchanged (projections, short convs, RoPE, K/V groups), so
its Q/K/V can be the same weights as a softmax attention's. Without the softmax the sum factorises: decoding
keeps ``S = sum_j v_j k_j^T`` per key/value head, a state of constant size, instead of every key and value.
The parallel form is the scan of the selective recurrences with zero log-decay (exact, chunked matmuls).

Each head's output is divided by its root mean square (no weights), as RetNet and TransNormer normalise
linear attention: without the softmax's normalisation the sum grows with the number of tokens read.
"""

from __future__ import annotations

import torch
from torch import Tensor

from starlab.liv import ops
from starlab.liv.attention import Attention
from starlab.liv.base import State
from starlab.liv.shortconv import conv_window, conv_window_values, maybe_conv_step


def head_rms_norm(y: Tensor, eps: float = 1e-6) -> Tensor:
    """Each head's output ``(..., head_dim)`` divided by its root mean square."""
    return y * torch.rsqrt(y.pow(2).mean(dim=-1, keepdim=True) + eps)


class LinearAttention(Attention):
    # ---- parallel ------------------------------------------------------------------------------------
    def mix(self, q: Tensor, cached: tuple[Tensor, Tensor]) -> Tensor:
        k, v = (ops.repeat_kv(t, self.heads).transpose(1, 2) for t in cached)  # b l h d
        c = self._rope(q, start=0).transpose(1, 2) * self.head_dim**-0.5
        no_decay = v.new_zeros(v.shape[:3])
        y, _ = ops.chunked_scan(v, no_decay, k, c, chunk=self.config.scan_chunk, final_state=False)
        return head_rms_norm(y).flatten(-2)

    # ---- recurrent -----------------------------------------------------------------------------------
    def init_cached_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        state = {
            "S": torch.zeros(batch, self.kv_heads, self.head_dim, self.head_dim, device=device, dtype=dtype),
            "position": 0,  # RoPE needs it; a plain int (like the backbone's position), not cache
        }
        if self.conv_size:
            kv_width = 2 * self.kv_heads * self.head_dim
            state["kv_conv"] = conv_window(batch, self.conv_size, kv_width, device, dtype)
        return state

    def cached_step(self, x_t: Tensor, state: State) -> tuple[tuple[Tensor, int], State]:
        f = self.featurizer
        kv_t, state = maybe_conv_step(f.kv_proj(x_t), f.kv_conv, state, "kv_conv")
        k_t, v_t = self._keys_values(kv_t[:, None], start=state["position"])  # b kvh 1 d
        s = state["S"] + v_t.transpose(-1, -2) @ k_t
        return (s, state["position"]), {**state, "S": s, "position": state["position"] + 1}

    def mix_step(self, q: Tensor, cached: tuple[Tensor, int]) -> Tensor:
        s, position = cached
        c = self._rope(q, start=position) * self.head_dim**-0.5  # b h 1 d
        y = (ops.repeat_kv(s, self.heads) @ c.transpose(-1, -2)).squeeze(-1)  # b h d
        return head_rms_norm(y).flatten(-2)

    # ---- cache size ----------------------------------------------------------------------------------
    def cached_cache_values(self, seq_len: int) -> int:
        kv_width = 2 * self.kv_heads * self.head_dim
        return self.kv_heads * self.head_dim**2 + conv_window_values(self.conv_size, kv_width)
