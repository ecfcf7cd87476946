"""LIV speed: forward+backward time of every class, decode throughput, and the fast ops vs their references.

    python bench/ops.py            # full run: batch 8, width 256, L = 256 .. 4096 (about 25 minutes on 2 cores)
    python bench/ops.py --quick    # L = 256, 512 only, as a smoke check
    python bench/ops.py --only SA-1 Rec-1    # a subset of classes, with their references

References, timed in the same run:
* SA-1 vs a minimal hand-written attention block (fused QKV, RoPE, SDPA, output projection);
* Rec-1/Rec-2 with the chunked scan vs the same layer with the sequential loop over time;
* GConv-2 with FFT convolution vs the same layer with the direct O(L^2) convolution.
At each length a class and its references are timed in alternation (a, b, a, b, ...), so drift in machine
load affects both alike; the slow references run up to L=2048.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_medians, markdown_table, print_table, timed, write_json
from starlab import runtime
from starlab.liv import build_liv, classes, ops

TARGET_HEADER = ["target", "measured", "goal", "met"]


class HandWrittenAttention(nn.Module):
    """The reference for SA-1: the same computation with no abstraction at all."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        inv_freq = 10_000.0 ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        angles = torch.arange(length, dtype=torch.float32)[:, None] * inv_freq
        cos, sin = angles.cos(), angles.sin()

        def rope(t: torch.Tensor) -> torch.Tensor:
            t1, t2 = t.chunk(2, dim=-1)
            return torch.cat((t1 * cos - t2 * sin, t2 * cos + t1 * sin), dim=-1)

        y = F.scaled_dot_product_attention(rope(q), rope(k), v, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


def train_step(layer: nn.Module, batch: int, length: int, width: int) -> Callable[[], None]:
    x = torch.randn(batch, length, width, requires_grad=True)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()

    return step


@torch.inference_mode()
def decode_tokens_per_s(layer: nn.Module, batch: int, width: int, tokens: int) -> float:
    xs = torch.randn(tokens, batch, width)

    def run() -> None:
        state = layer.init_state(batch)
        for x_t in xs:
            _, state = layer.step(x_t, state)

    return batch * tokens / timed(run, repeats=2)


def time_with_references(
    layer: nn.Module, references: dict[str, tuple[nn.Module, list[int]]], batch: int, width: int, lengths: list[int]
) -> tuple[dict[int, float], dict[str, dict[int, float]]]:
    """Forward+backward seconds of a layer and its references, interleaved at each length."""
    own: dict[int, float] = {}
    refs: dict[str, dict[int, float]] = {name: {} for name in references}
    for length in lengths:
        present = [name for name, (_, ref_lengths) in references.items() if length in ref_lengths]
        steps = [train_step(layer, batch, length, width)]
        steps += [train_step(references[name][0], batch, length, width) for name in present]
        medians = interleaved_medians(steps)
        own[length] = medians[0]
        for name, median in zip(present, medians[1:], strict=True):
            refs[name][length] = median
    return own, refs


def check_targets(results: dict, refs: dict, lengths: list[int]) -> list[list[object]]:
    """The issue's speed targets that this run measured, each as (name, measured ratio, goal, met)."""
    rows: list[list[object]] = []
    if "SA-1" in results:
        sa1, ref = results["SA-1"]["train_s"], refs["hand-written attention"]
        worst = max(sa1[length] / ref[length] for length in lengths)
        rows.append(["SA-1 / hand-written SDPA block (worst L)", round(worst, 3), "<= 1.1", worst <= 1.1])
    for name in ("Rec-1", "Rec-2"):
        if name not in results:
            continue
        loop, parallel = refs[f"{name} sequential loop"], results[name]["train_s"]
        probe = 2048 if 2048 in loop else max(loop)
        speedup = loop[probe] / parallel[probe]
        rows.append([f"{name} loop / parallel at L={probe}", round(speedup, 2), ">= 10", speedup >= 10])
        if {512, 4096} <= set(lengths):
            growth = parallel[4096] / parallel[512]
            rows.append([f"{name} time(4096) / time(512)", round(growth, 2), "<= 8.8", growth <= 8.8])
    if "GConv-2" in results:
        first, last = lengths[0], lengths[-1]
        growth = results["GConv-2"]["train_s"][last] / results["GConv-2"]["train_s"][first]
        bound = (last * math.log(last)) / (first * math.log(first))
        goal = f"<= {bound:.1f} (L log L)"
        rows.append([f"GConv-2 time({last}) / time({first})", round(growth, 2), goal, growth <= bound])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--decode-tokens", type=int, default=256)
    parser.add_argument("--reference-max-length", type=int, default=2048, help="longest L for the slow refs")
    parser.add_argument("--quick", action="store_true", help="L = 256, 512 and 64 decode tokens")
    parser.add_argument("--only", nargs="+", metavar="CLASS", help="time only these classes (and their references)")
    args = parser.parse_args()
    if args.quick:
        args.lengths, args.decode_tokens = [256, 512], 64
    runtime.configure()
    torch.manual_seed(0)
    batch, width, lengths = args.batch, args.width, args.lengths

    def references(name: str) -> dict[str, tuple[nn.Module, list[int]]]:
        """The slow or hand-written twins of a class, timed interleaved with it."""
        short = [length for length in lengths if length <= args.reference_max_length]
        if name == "SA-1":
            return {"hand-written attention": (HandWrittenAttention(width, build_liv(1, width).heads), lengths)}
        if name in ("Rec-1", "Rec-2"):
            layer = build_liv(name, width)
            layer.scan = ops.sequential_scan
            return {f"{name} sequential loop": (layer, short)}
        if name == "GConv-2":
            layer = build_liv(name, width)
            layer.long_conv = ops.direct_causal_conv
            return {"GConv-2 direct conv": (layer, short)}
        return {}

    results: dict[str, dict] = {}
    refs: dict[str, dict[int, float]] = {}
    for spec in classes():
        if args.only and spec.name not in args.only:
            continue
        layer = build_liv(spec, width)
        times, own_refs = time_with_references(layer, references(spec.name), batch, width, lengths)
        decode = decode_tokens_per_s(layer, batch, width, args.decode_tokens)
        results[spec.name] = {"train_s": times, "decode_tokens_per_s": decode}
        refs.update(own_refs)
        print(f"{spec.name:24s} " + " ".join(f"{t:8.4f}" for t in times.values()) + f"  decode {decode:9.0f} tok/s")
        for name, ref_times in own_refs.items():
            print(f"{name:24s} " + " ".join(f"{t:8.4f}" for t in ref_times.values()), flush=True)

    header = ["layer", *[f"L={length} (s)" for length in lengths], "decode tok/s"]
    rows = [
        [name, *[r["train_s"][length] for length in lengths], round(r["decode_tokens_per_s"])]
        for name, r in results.items()
    ]
    rows += [[name, *[t.get(length, "-") for length in lengths], "-"] for name, t in refs.items()]
    title = f"forward+backward seconds, batch {batch}, width {width}; decode {args.decode_tokens} tokens"
    print_table(title, header, rows)
    targets = check_targets(results, refs, lengths)
    print_table("targets", TARGET_HEADER, targets)
    payload = {"batch": batch, "width": width, "lengths": lengths, "classes": results, "references": refs}
    payload["targets"] = [dict(zip(TARGET_HEADER, t, strict=True)) for t in targets]
    print(f"wrote {write_json('ops', payload)}\n")
    print(markdown_table(header, rows) + "\n\n" + markdown_table(TARGET_HEADER, targets))


if __name__ == "__main__":
    main()
