"""Pure token-mixing functions: the math of every LIV, with no parameters and no shapes to guess.

The layers own the parameters and projections and call these functions: one module per kind in
``starlab.liv`` (``attention``, ``linear_attention``, ``recurrence``, ``convolution`` for the short and the long
convolution, ``memoryless``, ``differential``; ``shortconv`` is the short convolution inside featurizers), on
the bases in ``starlab.liv.base``. Five fast ops have a reference twin that spells the same computation out as
a loop, a matrix or a direct sum: ``causal_attention`` / ``naive_attention``, ``causal_depthwise_conv`` /
``naive_depthwise_conv``, ``chunked_scan`` / ``sequential_scan``, ``fft_causal_conv`` / ``direct_causal_conv``
and ``swiglu`` / ``naive_swiglu``. The references exist for tests (``tests/test_ops.py`` checks the fast ops
against them, and the decoding steps ``conv_step`` and ``long_conv_step`` against the parallel forms;
``sequential_scan`` is a loop of the recurrence's decoding step ``scan_update``/``scan_readout``) and for
benchmarks (``bench/ops.py`` swaps ``sequential_scan`` and ``direct_causal_conv`` into the layers to time
what they replace).

Shape conventions: sequences are ``(batch, length, channels)``; attention tensors are
``(batch, heads, length, head_dim)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# --------------------------------------------------------------------------------------------------
# Rotary position embedding
# --------------------------------------------------------------------------------------------------


def rope_angles(positions: Tensor, head_dim: int, base: float = 10_000.0) -> tuple[Tensor, Tensor]:
    """cos/sin tables of shape ``(len(positions), head_dim // 2)`` for rotary embeddings."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs ``(i, i + head_dim/2)`` of ``x (..., length, head_dim)`` by position angles."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


# --------------------------------------------------------------------------------------------------
# Softmax attention (dense token mixing: sigma(C_i B_j))
# --------------------------------------------------------------------------------------------------


def repeat_kv(x: Tensor, n_heads: int) -> Tensor:
    """Expand ``(batch, kv_heads, length, d)`` to ``n_heads`` heads, for grouped-query attention."""
    batch, kv_heads, length, dim = x.shape
    if kv_heads == n_heads:
        return x
    rep = n_heads // kv_heads
    return x[:, :, None].expand(batch, kv_heads, rep, length, dim).reshape(batch, n_heads, length, dim)


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal softmax attention; ``k``/``v`` may have fewer heads than ``q`` (GQA).

    When ``q`` is shorter than ``k`` (decoding), the queries are the *last* positions of the sequence, so
    every query sees all keys up to and including its own position.
    """
    n_heads = q.shape[1]
    k, v = repeat_kv(k, n_heads), repeat_kv(v, n_heads)
    if q.shape[2] == 1:
        return F.scaled_dot_product_attention(q, k, v)
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"queries ({q.shape[2]}) and keys ({k.shape[2]}) must have the same length")
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def naive_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Reference: explicit score matrix, causal mask, softmax."""
    n_heads, length = q.shape[1], q.shape[2]
    k, v = repeat_kv(k, n_heads), repeat_kv(v, n_heads)
    offset = k.shape[2] - length
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    rows = torch.arange(length, device=q.device)[:, None] + offset
    cols = torch.arange(k.shape[2], device=q.device)[None, :]
    scores = scores.masked_fill(cols > rows, float("-inf"))
    return scores.softmax(dim=-1) @ v


# --------------------------------------------------------------------------------------------------
# Causal depthwise short convolution (explicit Toeplitz kernel K_{i-j}, a few taps)
# --------------------------------------------------------------------------------------------------


def causal_depthwise_conv(x: Tensor, weight: Tensor) -> Tensor:
    """``y[t, c] = sum_k weight[c, k] * x[t - (K-1) + k, c]`` with zeros before the start.

    ``x (batch, length, channels)``, ``weight (channels, K)``; the last tap multiplies the current token.
    Computed as a sum of K shifted copies: for the short kernels of featurizers this is 1.5-1.8x faster on CPU
    than ``F.conv1d`` at small sizes (and equal at large ones), and it stays in ``(batch, length, channels)``
    layout, which downstream kernels (SDPA's flash path among them) need to be fast.
    """
    length, taps = x.shape[1], weight.shape[1]
    y = x * weight[:, taps - 1]
    for shift in range(1, min(taps, length + 1)):
        y = y + F.pad(x[:, : length - shift], (0, 0, shift, 0)) * weight[:, taps - 1 - shift]
    return y


def naive_depthwise_conv(x: Tensor, weight: Tensor) -> Tensor:
    """Reference: every output position computed on its own from the window that ends there."""
    taps = weight.shape[1]
    padded = F.pad(x, (0, 0, taps - 1, 0))
    return torch.stack([(padded[:, t : t + taps] * weight.t()).sum(dim=1) for t in range(x.shape[1])], dim=1)


def conv_step(window: Tensor, x_t: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """One decoding step of :func:`causal_depthwise_conv`.

    ``window (batch, K-1, channels)`` holds the previous inputs; returns ``(y_t, new_window)``.
    """
    full = torch.cat((window, x_t[:, None]), dim=1)
    return (full * weight.t()).sum(dim=1), full[:, 1:]


# --------------------------------------------------------------------------------------------------
# Selective diagonal linear recurrence (semi-separable: C_i A_{i-1}...A_{j+1} B_j)
# --------------------------------------------------------------------------------------------------
#
#   h_t = exp(log_a_t) * h_{t-1} + x_t (outer) b_t        h: (heads, head_dim, state)
#   y_t = h_t @ c_t
#
# The decay exp(log_a) is a per-head scalar (log_a <= 0), b and c are shared by all heads (the structured
# state-space-dual form of a selective SSM, Mamba-2) or given per head (b, c of shape (batch, length, heads, state):
# each head its own features, as multi-head linear attention, which is this scan with log_a = 0). The parallel form
# below is the chunked algorithm: exact attention-like matmuls inside chunks, state passing between chunks through a
# small decay matrix. Every exponent taken is <= 0, so nothing overflows. Low precision needs two more things.
# Log-decays are summed in fp32 whatever the inputs' dtype: inside a chunk the decay between two steps is a difference
# of two sums of at most ``chunk`` terms, exact enough in fp32 and not in fp16/bf16 (17% error in bf16 at strong
# decay). And between chunks, where sums run over the whole sequence, the log-decay from chunk ``j`` to chunk ``i`` is
# summed over the chunks between them (``segsum``, the stable form of Mamba-2's reference) rather than taken as a
# difference of two long cumulative sums: those pass fp16's range (-65504) at L = 4096 and strong decay (inf - inf =
# NaN), and even in fp32 they lose the digits of a small decay that follows a long strong one.


def segsum(log_a: Tensor) -> Tensor:
    """``out[..., i, j] = sum(log_a[..., j + 1 : i + 1])`` for ``i >= j`` (the log-decay from step ``j`` to
    ``i``; 0 on the diagonal), else ``-inf``: each entry the sum of its own terms, never a difference."""
    size = log_a.shape[-1]
    strictly_below = torch.ones(size, size, dtype=torch.bool, device=log_a.device).tril(-1)
    terms = log_a[..., :, None].expand(*log_a.shape, size).masked_fill(~strictly_below, 0)
    causal = torch.ones(size, size, dtype=torch.bool, device=log_a.device).tril()
    return terms.cumsum(dim=-2).masked_fill(~causal, float("-inf"))


def decay_matrix(log_a_cum: Tensor) -> Tensor:
    """``out[..., i, j] = exp(cum[i] - cum[j])`` for ``i >= j`` (decay from step ``j`` to ``i``), else 0; for
    cumulative sums over one chunk (few terms: the difference keeps its digits in fp32)."""
    size = log_a_cum.shape[-1]
    causal = torch.ones(size, size, dtype=torch.bool, device=log_a_cum.device).tril()
    diff = log_a_cum[..., :, None] - log_a_cum[..., None, :]
    return torch.exp(diff.masked_fill(~causal, float("-inf")))


def chunked_scan(
    x: Tensor,
    log_a: Tensor,
    b: Tensor,
    c: Tensor,
    chunk: int = 64,
    initial_state: Tensor | None = None,
    final_state: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Parallel form of the selective recurrence.

    Args:
        x: ``(batch, length, heads, head_dim)`` inputs (already scaled by the step size).
        log_a: ``(batch, length, heads)`` log-decays, ``<= 0``.
        b, c: ``(batch, length, state)`` input and readout projections shared by all heads, or
            ``(batch, length, heads, state)`` per head.
        chunk: chunk length; cost is ``O(length * chunk)`` inside chunks plus ``O((length/chunk)^2)``.
        initial_state: optional ``(batch, heads, head_dim, state)``.
        final_state: also compute the state after the last position (training does not need it).

    Returns:
        ``y (batch, length, heads, head_dim)`` and the final state ``(batch, heads, head_dim, state)``, or
        ``None`` for it when ``final_state`` is false.
    """
    batch, length, heads, head_dim = x.shape
    chunk = min(chunk, max(length, 1))  # short sequences need no padding up to a full chunk
    pad = (-length) % chunk
    if pad:  # zero inputs with zero log-decay leave the state untouched
        x, log_a, b, c = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, log_a, b, c))
    n_chunks = (length + pad) // chunk
    xs = x.reshape(batch, n_chunks, chunk, heads, head_dim).permute(0, 3, 1, 2, 4)  # b h n t p
    bs, cs = (_chunked_features(t, n_chunks, chunk) for t in (b, c))  # b h|1 n t s
    a_cum = log_a.float().reshape(batch, n_chunks, chunk, heads).permute(0, 3, 1, 2).cumsum(dim=-1)  # b h n t

    # 1. inside each chunk: y = (C B^T * decay) X, a masked "attention" with decays instead of softmax
    y = ((cs @ bs.transpose(-1, -2)) * decay_matrix(a_cum).to(x.dtype)) @ xs
    if n_chunks == 1 and initial_state is None and not final_state:  # one chunk: nothing enters or leaves
        return y.permute(0, 2, 3, 1, 4).reshape(batch, chunk, heads, head_dim)[:, :length], None
    # 2. the state each chunk leaves behind, starting from zero
    to_end = torch.exp(a_cum[..., -1:] - a_cum).to(x.dtype)  # decay from each step to its chunk's end
    chunk_states = (xs * to_end[..., None]).transpose(-1, -2) @ bs  # b h n p s
    # 3. pass states between chunks: state entering chunk z = sum over earlier chunks, decayed
    if initial_state is None:
        initial_state = chunk_states.new_zeros(chunk_states[:, :, :1].shape)
    else:
        initial_state = initial_state[:, :, None]
    chunk_states = torch.cat((initial_state, chunk_states), dim=2)
    chunk_decay = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0)))).to(x.dtype)  # b h n+1 n+1
    states = torch.einsum("bhzc,bhcps->bhzps", chunk_decay, chunk_states)
    entering, final = states[:, :, :-1], states[:, :, -1]
    # 4. contribution of the entering state to every position of the chunk
    y = y + (cs @ entering.transpose(-1, -2)) * torch.exp(a_cum).to(x.dtype)[..., None]
    y = y.permute(0, 2, 3, 1, 4).reshape(batch, n_chunks * chunk, heads, head_dim)
    return y[:, :length], final if final_state else None


def _chunked_features(features: Tensor, n_chunks: int, chunk: int) -> Tensor:
    """``(batch, length[, heads], state)`` -> ``(batch, heads or 1, n_chunks, chunk, state)``."""
    if features.dim() == 3:
        return features.reshape(features.shape[0], 1, n_chunks, chunk, -1)
    return features.reshape(features.shape[0], n_chunks, chunk, *features.shape[2:]).permute(0, 3, 1, 2, 4)


def _per_head(features_t: Tensor) -> Tensor:
    """One step's ``b``: ``(batch, state)`` shared or ``(batch, heads, state)``, as ``(batch, heads|1, state)``."""
    return features_t[:, None] if features_t.dim() == 2 else features_t


def scan_update(state: Tensor, x_t: Tensor, log_a_t: Tensor, b_t: Tensor) -> Tensor:
    """``h_t = exp(log_a_t) h_{t-1} + x_t b_t^T`` for ``state (batch, heads, head_dim, state)``."""
    return state * torch.exp(log_a_t)[..., None, None] + x_t[..., None] * _per_head(b_t)[:, :, None, :]


def scan_readout(state: Tensor, c_t: Tensor) -> Tensor:
    """``y_t = h_t c_t``: ``(batch, heads, head_dim)``."""
    if c_t.dim() == 2:
        return torch.einsum("bhps,bs->bhp", state, c_t)
    return torch.einsum("bhps,bhs->bhp", state, c_t)


def sequential_scan(
    x: Tensor,
    log_a: Tensor,
    b: Tensor,
    c: Tensor,
    chunk: int = 64,
    initial_state: Tensor | None = None,
    final_state: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Reference: the recurrence as a Python loop over time (same signature as :func:`chunked_scan`)."""
    del chunk
    batch, length, heads, head_dim = x.shape
    state = x.new_zeros(batch, heads, head_dim, b.shape[-1]) if initial_state is None else initial_state
    ys = []
    for t in range(length):
        state = scan_update(state, x[:, t], log_a[:, t], b[:, t])
        ys.append(scan_readout(state, c[:, t]))
    return torch.stack(ys, dim=1), state if final_state else None


# --------------------------------------------------------------------------------------------------
# Causal long convolution (scaled Toeplitz with a kernel as long as the sequence)
# --------------------------------------------------------------------------------------------------


def fft_causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """``y[t, c] = sum_{s <= t} kernel[c, t - s] * u[s, c]`` in ``O(L log L)`` via zero-padded FFTs.

    ``u (batch, length, channels)``, ``kernel (channels, length)``.
    """
    length = u.shape[1]
    n = 2 * length
    work = u.dtype if u.dtype in (torch.float32, torch.float64) else torch.float32  # no half-precision FFTs
    u_f = torch.fft.rfft(u.transpose(1, 2).to(work), n=n)
    k_f = torch.fft.rfft(kernel.to(work), n=n)
    y = torch.fft.irfft(u_f * k_f, n=n)[..., :length]
    return y.transpose(1, 2).to(u.dtype)


def direct_causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """Reference: the same sum computed directly in ``O(L^2)``, as a depthwise conv with a full-length kernel."""
    length, channels = u.shape[1], u.shape[2]
    padded = F.pad(u.transpose(1, 2), (length - 1, 0))
    y = F.conv1d(padded, kernel[:, :length].flip(-1).unsqueeze(1), groups=channels)
    return y.transpose(1, 2)


def long_conv_step(history: Tensor, kernel: Tensor) -> Tensor:
    """Output at the last position of ``history (batch, t, channels)`` for ``kernel (channels, >= t)``."""
    length = history.shape[1]
    return torch.einsum("btc,ct->bc", history, kernel[:, :length].flip(-1))


# --------------------------------------------------------------------------------------------------
# Gated memoryless unit (diagonal token mixing)
# --------------------------------------------------------------------------------------------------


def swiglu(gate: Tensor, value: Tensor) -> Tensor:
    """SwiGLU's token-wise mixing: ``silu(gate) * value``."""
    return F.silu(gate) * value


def naive_swiglu(gate: Tensor, value: Tensor) -> Tensor:
    """Reference: the sigmoid written out."""
    return gate * torch.sigmoid(gate) * value
