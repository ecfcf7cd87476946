"""Training throughput of a genome-built Transformer++ vs a hand-written one of identical shape, and MFU.

    python bench/model.py                     # widths 256 and 512, L = 512, depth 8, batch 8
    python bench/model.py --widths 256 --steps 5

Both models have the same parameters (RMSNorm, RoPE, SDPA attention, SwiGLU, tied head); tokens/s counts
full AdamW training steps. Model FLOPs utilisation = analytic training FLOPs per second / the matmul peak
measured in the same run (fp32 ``torch.mm`` of 2048x2048 matrices).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_medians, markdown_table, print_table, write_json
from starlab import runtime
from starlab.genome import preset
from starlab.liv import LIVConfig
from starlab.liv.memoryless import hidden_width
from starlab.model import Backbone


class Block(nn.Module):
    """Hand-written pre-norm attention + SwiGLU, exactly the shapes of SA-1 and GMemless."""

    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.RMSNorm(width, eps=1e-6), nn.RMSNorm(width, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.attn_out = nn.Linear(width, width, bias=False)
        self.gate_value = nn.Linear(width, 2 * hidden, bias=False)
        self.mlp_out = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)

        def rope(t: torch.Tensor) -> torch.Tensor:
            t1, t2 = t.chunk(2, dim=-1)
            return torch.cat((t1 * cos - t2 * sin, t2 * cos + t1 * sin), dim=-1)

        y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        x = x + self.attn_out(y.transpose(1, 2).reshape(batch, length, width))
        gate, value = self.gate_value(self.norm2(x)).chunk(2, dim=-1)
        return x + self.mlp_out(F.silu(gate) * value)


class ReferenceTransformer(nn.Module):
    def __init__(self, depth: int, width: int, vocab: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.head_dim = width // heads
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width, heads, hidden) for _ in range(depth // 2))
        self.norm = nn.RMSNorm(width, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        inv_freq = 10_000.0 ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        angles = torch.arange(tokens.shape[1], dtype=torch.float32)[:, None] * inv_freq
        cos, sin = angles.cos(), angles.sin()
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        return F.linear(self.norm(x) * x.shape[-1] ** -0.5, self.embed.weight)


def training_step(model: nn.Module, batch: int, length: int, vocab: int, steps: int) -> Callable[[], None]:
    """``steps`` full AdamW steps on a fixed random batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, vocab, (batch, length + 1))

    def run() -> None:
        for _ in range(steps):
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def matmul_peak_flops(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def training_flops_per_token(model: Backbone, length: int) -> float:
    """PaLM's count: 6 x (non-embedding params + the head's matmul) + 12 x attention layers x width x length."""
    matmul_params = model.num_params(non_embedding=True) + model.vocab_size * model.width
    attention_layers = sum(liv.spec.family == "attention" for liv in model.livs)
    return 6 * matmul_params + 12 * attention_layers * model.width * length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per timed repeat")
    args = parser.parse_args()
    runtime.configure()

    peak = matmul_peak_flops()
    rows, results = [], []
    for width in args.widths:
        torch.manual_seed(0)
        ours = Backbone(preset("transformer++", args.depth), width, args.vocab)
        heads, hidden = ours.livs[0].heads, hidden_width(width, LIVConfig())
        reference = ReferenceTransformer(args.depth, width, args.vocab, heads, hidden)
        assert sum(p.numel() for p in reference.parameters()) == ours.num_params(), "shapes differ"
        runs = [training_step(m, args.batch, args.length, args.vocab, args.steps) for m in (ours, reference)]
        ours_s, ref_s = interleaved_medians(runs, repeats=5, budget_s=300)  # alternated: drift hits both alike
        ours_tps, ref_tps = (args.batch * args.length * args.steps / s for s in (ours_s, ref_s))
        flops = training_flops_per_token(ours, args.length)
        result = {
            "width": width,
            "params": ours.num_params(),
            "starlab_tokens_per_s": ours_tps,
            "reference_tokens_per_s": ref_tps,
            "ratio": ours_tps / ref_tps,
            "flops_per_token": flops,
            "mfu_starlab": flops * ours_tps / peak,
            "mfu_reference": flops * ref_tps / peak,
        }
        results.append(result)
        rows.append([width, result["params"], round(ours_tps), round(ref_tps), round(result["ratio"], 3),
                     round(result["mfu_starlab"], 3), round(result["mfu_reference"], 3)])  # fmt: skip

    header = ["width", "params", "starlab tok/s", "reference tok/s", "ratio", "MFU starlab", "MFU reference"]
    title = (
        f"transformer++ depth {args.depth}, L={args.length}, batch {args.batch}; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    print_table(title, header, rows)
    payload = {"args": vars(args), "matmul_peak_flops": peak, "results": results}
    print(f"wrote {write_json('model', payload)}\n")
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s\n\n" + markdown_table(header, rows))


if __name__ == "__main__":
    main()
