"""Training throughput and MFU: genome-built models vs a nanoGPT-style Transformer++ of identical shape.

    python bench/train.py                                    # CPU: --shape cpu (3-5 minutes on 2 cores)
    python bench/train.py --shape paper-125m --device cuda   # the paper's 125M backbone at L = 4096 (GPU only)
    python bench/train.py --micro-batches 1 2 4 8 --compile --precision bf16 --budget-s 120
    bash bench/gpu.sh                                        # all GPU checks and this benchmark on a fresh machine

Models: ``transformer++``, ``striped-mamba`` and ``striped-hyena`` built from their genomes, and ``reference``, a
hand-written Transformer++ (RMSNorm, fused-QKV attention with RoPE and SDPA, SwiGLU, tied head) with exactly
transformer++'s parameters. Every model trains with the same step: a batch of ``--batch`` random sequences of
length L, split into micro-batches whose gradients accumulate, bf16 autocast on CUDA, gradient clipping, AdamW
(fused on CUDA). Models are timed in alternation (a, b, c, a, b, c, ...), after warm-up steps, so drift in
machine load hits all alike. MFU = training FLOPs per token (``starlab.model.training_flops_per_token``: PaLM's
count, attention counted full) x tokens/s / ``starlab.runtime.peak_flops`` (a GPU's data-sheet bf16 peak; on a
CPU the fp32 matmul peak, measured again between the timed calls).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_medians, markdown_table, print_table, write_json
from starlab import runtime
from starlab.genome import preset
from starlab.liv import LIVConfig, meta_device
from starlab.liv.memoryless import hidden_width
from starlab.model import Backbone, training_flops_per_token
from starlab.train.trainer import autocast

REFERENCE = "reference"
MODELS = ("transformer++", REFERENCE, "striped-mamba", "striped-hyena")
TARGET_HEADER = ["target", "measured", "goal", "met"]
RATIO_GOAL, MFU_GOAL = 0.9, 0.4
MIB = 2**20


@dataclass(frozen=True)
class Shape:
    """Model and batch shape; ``batch`` sequences of ``length`` tokens make one optimizer step."""

    depth: int
    width: int
    length: int
    vocab: int
    batch: int
    micro_batches: tuple[int, ...]  # micro-batch sizes to measure (each divides ``batch``)
    budget_s: float  # seconds of timed steps for the whole run (warm-up excluded)


SHAPES = {
    "paper-125m": Shape(depth=24, width=768, length=4096, vocab=32768, batch=8, micro_batches=(1, 2, 4, 8),
                        budget_s=120),  # the paper's 125M backbone, 32k BPE
    "cpu": Shape(depth=8, width=256, length=512, vocab=256, batch=8, micro_batches=(1, 2, 4, 8), budget_s=100),
}  # fmt: skip
OVERRIDES = ("depth", "width", "length", "vocab", "batch")


# ---- the nanoGPT-style reference ------------------------------------------------------------------------
def rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on channel pairs (i, i + head_dim / 2), in ``t``'s dtype, as SA-1 applies it."""
    t1, t2 = t.chunk(2, dim=-1)
    cos, sin = cos.to(t.dtype), sin.to(t.dtype)
    return torch.cat((t1 * cos - t2 * sin, t2 * cos + t1 * sin), dim=-1)


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
        y = F.scaled_dot_product_attention(rotate(q, cos, sin), rotate(k, cos, sin), v, is_causal=True)
        x = x + self.attn_out(y.transpose(1, 2).reshape(batch, length, width))
        gate, value = self.gate_value(self.norm2(x)).chunk(2, dim=-1)
        return x + self.mlp_out(F.silu(gate) * value)


class ReferenceTransformer(nn.Module):
    """Embedding, ``depth // 2`` blocks (one block = an attention slot and a SwiGLU slot), RMSNorm, tied head."""

    def __init__(self, depth: int, width: int, vocab: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.head_dim = width // heads
        self.embed = nn.Embedding(vocab, width)
        self.blocks = nn.ModuleList(Block(width, heads, hidden) for _ in range(depth // 2))
        self.norm = nn.RMSNorm(width, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        channels = torch.arange(0, self.head_dim, 2, dtype=torch.float32, device=tokens.device)
        positions = torch.arange(tokens.shape[1], dtype=torch.float32, device=tokens.device)
        angles = positions[:, None] * 10_000.0 ** (-channels / self.head_dim)
        cos, sin = angles.cos(), angles.sin()
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, cos, sin)
        return F.linear(self.norm(x) * x.shape[-1] ** -0.5, self.embed.weight)


def build(name: str, shape: Shape) -> tuple[nn.Module, int, float]:
    """The model ``name`` at ``shape`` (seeded), its parameter count and its training FLOPs per token.

    The reference gets transformer++'s FLOPs: their shapes are identical, which the parameter count checks."""
    torch.manual_seed(0)
    if name != REFERENCE:
        model = Backbone(preset(name, shape.depth), shape.width, shape.vocab)
        return model, model.num_params(), training_flops_per_token(model, shape.length)
    with meta_device():  # transformer++ sized for free: heads, SwiGLU width, parameters, FLOPs
        twin = Backbone(preset("transformer++", shape.depth), shape.width, shape.vocab)
    reference = ReferenceTransformer(shape.depth, shape.width, shape.vocab, twin.livs[0].heads,
                                     hidden_width(shape.width, LIVConfig()))  # fmt: skip
    params = sum(p.numel() for p in reference.parameters())
    assert params == twin.num_params(), f"reference has {params} parameters, transformer++ {twin.num_params()}"
    return reference, params, training_flops_per_token(twin, shape.length)


# ---- the training step every model takes ---------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    device: torch.device
    bf16: bool
    compile: bool
    steps: int  # optimizer steps per timed call


class Contender:
    """One model on the device with its optimizer and a fixed random batch."""

    def __init__(self, name: str, shape: Shape, setting: Setting) -> None:
        self.name, self.setting = name, setting
        self.baseline = allocated_bytes(setting.device)  # before this model's parameters reach the device
        module, self.params, self.flops_per_token = build(name, shape)
        module.to(setting.device).train()
        fused = setting.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=fused)
        self.weights = list(module.parameters())
        self.model = torch.compile(module) if setting.compile else module
        generator = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, shape.vocab, (shape.batch, shape.length + 1), generator=generator)
        self.tokens, self.vocab = tokens.to(setting.device), shape.vocab
        self.peak_bytes: dict[int, int] = {}
        self.errors: dict[int, str] = {}

    def step(self, micro_batch: int) -> None:
        """One optimizer step over the whole batch, gradients accumulated over micro-batches."""
        pieces = self.tokens.split(micro_batch)
        self.optimizer.zero_grad(set_to_none=True)
        for piece in pieces:
            with autocast(self.setting.device, self.setting.bf16):
                logits = self.model(piece[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, self.vocab), piece[:, 1:].reshape(-1)) / len(pieces)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.weights, 1.0)
        self.optimizer.step()

    def timed_call(self, micro_batch: int) -> Callable[[], None]:
        """``setting.steps`` steps, ending with the device idle, so wall-clock time is the work's time."""

        def run() -> None:
            for _ in range(self.setting.steps):
                self.step(micro_batch)
            synchronize(self.setting.device)

        return run

    def warm_up(self, micro_batch: int, steps: int) -> None:
        """Untimed steps (compilation, lazy optimizer state, allocator), the last one measuring peak memory on
        CUDA. An error (out of memory, say) is kept in ``errors`` and this size is not timed."""
        device = self.setting.device
        try:
            for index in range(steps):
                if index == steps - 1 and device.type == "cuda":
                    synchronize(device)
                    torch.cuda.reset_peak_memory_stats(device)
                self.timed_call(micro_batch)()
        except Exception as error:  # one model failing at one size (out of memory, say) leaves the others
            self.errors[micro_batch] = str(error).strip().splitlines()[0][:200]
        if micro_batch in self.errors:  # out of the except block, so that the failed step's tensors are freed
            print(f"{self.name}, micro-batch {micro_batch}: {self.errors[micro_batch]}", flush=True)
            self.optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        elif device.type == "cuda":
            self.peak_bytes[micro_batch] = torch.cuda.max_memory_allocated(device) - self.baseline


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def allocated_bytes(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


# ---- peak memory on a CPU: one fresh process per model -------------------------------------------------
def rss_bytes(key: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, from ``/proc/self/status``.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries the parent's peak into a child over ``exec``, so a probe
    started from a large benchmark process would read the parent's peak and see no growth."""
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0]) * 1024  # kB
    raise OSError(f"/proc/self/status has no {key}")


def probe_memory(name: str, shape: Shape, setting: Setting, micro_batches: list[int]) -> None:
    """Print, as JSON, the growth of peak RSS over this fresh process's RSS before the model was built, after
    one step at each micro-batch size in increasing order (so each peak is that size's; the C allocator keeps
    freed memory, which is why another model's steps in the same process would hide this one's)."""
    before = rss_bytes("VmRSS")
    contender = Contender(name, shape, setting)
    peaks = {}
    for micro_batch in sorted(micro_batches):
        contender.step(micro_batch)
        peaks[micro_batch] = rss_bytes("VmHWM") - before
    print(json.dumps(peaks))


def cpu_peak_bytes(name: str) -> dict[int, int]:
    """Run :func:`probe_memory` for ``name`` in a fresh process with this run's arguments."""
    command = [sys.executable, __file__, *sys.argv[1:], "--memory-probe", name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        print(f"memory probe of {name} failed: {done.stderr.strip()[-300:]}", flush=True)
        return {}
    return {int(size): peak for size, peak in json.loads(done.stdout.strip().splitlines()[-1]).items()}


# ---- measuring and reporting ---------------------------------------------------------------------------
def prepare(names: list[str], shape: Shape, setting: Setting, micro_batches: list[int], warmup: int) -> list:
    """Each model built, moved to the device and warmed up at every size before the next one is built, so that
    its CUDA peak memory is read against what was allocated before it (earlier models' fixed state)."""
    contenders = []
    for name in names:
        contender = Contender(name, shape, setting)
        for micro_batch in micro_batches:
            contender.warm_up(micro_batch, warmup)
        contenders.append(contender)
    return contenders


class PeakProbe:
    """Where the peak is measured (a CPU): ``runtime.peak_flops``'s own measurement, taken afresh between the
    models' timed calls, so that the load other processes put on the machine hits the peak and the models alike
    (one measurement before or after the run can make MFU exceed 100% or halve it on a shared machine)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples = str(device), []

    def __call__(self) -> None:
        self.samples.append(runtime.peak_flops.__wrapped__(self.device))  # uncached: a new measurement


def peak_is_measured(device: torch.device) -> bool:
    """False for a GPU whose data-sheet bf16 peak ``runtime`` knows."""
    return device.type != "cuda" or not any(
        key in torch.cuda.get_device_name(device) for key in runtime.BF16_PEAK_FLOPS
    )


def measure(contenders: list[Contender], shape: Shape, micro_batches: list[int], args) -> list[dict]:
    """Tokens/s, MFU and peak memory of every model at every micro-batch size, models timed in alternation."""
    if args.device.type == "cpu":
        for contender in contenders:
            contender.peak_bytes = cpu_peak_bytes(contender.name)
    tokens = shape.batch * shape.length * args.steps
    results = []
    for micro_batch in micro_batches:
        ready = [c for c in contenders if micro_batch not in c.errors]
        probe = PeakProbe(args.device) if peak_is_measured(args.device) else None
        calls = [c.timed_call(micro_batch) for c in ready] + ([probe] if probe else [])
        seconds = interleaved_medians(calls, args.repeats, args.budget_s / len(micro_batches)) if ready else []
        rates = {c.name: tokens / s for c, s in zip(ready, seconds[: len(ready)], strict=True)}
        peak = statistics.median(probe.samples) if probe and probe.samples else runtime.peak_flops(str(args.device))
        results += [result(contender, micro_batch, rates, peak) for contender in contenders]
    return results


def result(contender: Contender, micro_batch: int, rates: dict[str, float], peak: float) -> dict:
    rate, reference = rates.get(contender.name), rates.get(REFERENCE)
    return {
        "model": contender.name,
        "micro_batch": micro_batch,
        "params": contender.params,
        "flops_per_token": contender.flops_per_token,
        "tokens_per_s": rate,
        "vs_reference": rate / reference if rate and reference else None,
        "mfu": contender.flops_per_token * rate / peak if rate else None,
        "peak_flops": peak,
        "peak_memory_bytes": contender.peak_bytes.get(micro_batch),
        "error": contender.errors.get(micro_batch),
    }


def shown(value: float | None, form: str) -> str:
    return "–" if value is None else format(value, form)


def throughput_rows(results: list[dict]) -> list[list[object]]:
    rows = []
    for r in results:
        memory = None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] / MIB
        rate = shown(r["tokens_per_s"], ",.0f") if r["error"] is None else r["error"][:60]
        rows.append([r["micro_batch"], r["model"], rate, shown(r["vs_reference"], ".3f"), shown(r["mfu"], ".1%"),
                     shown(memory, ",.0f")])  # fmt: skip
    return rows


def target_rows(results: list[dict], gpu_bf16: bool) -> list[list[object]]:
    """The issue's targets this run measured: (name, measured, goal, met)."""
    ours = [r for r in results if r["model"] == "transformer++"]
    ratios = [r["vs_reference"] for r in ours if r["vs_reference"] is not None]
    mfus = [r["mfu"] for r in ours if r["mfu"] is not None]
    rows: list[list[object]] = []
    if ratios:
        worst = min(ratios)
        name = "transformer++ / reference tokens/s (worst micro-batch)"
        rows.append([name, f"{worst:.3f}", f">= {RATIO_GOAL}", "yes" if worst >= RATIO_GOAL else "no"])
    if mfus:
        best, met = max(mfus), "n/a (GPU target)"
        if gpu_bf16:
            met = "yes" if max(mfus) >= MFU_GOAL else "no"
        rows.append(["transformer++ bf16 MFU (best micro-batch)", f"{best:.1%}", f">= {MFU_GOAL:.0%}", met])
    return rows


def describe(args, shape: Shape, results: list[dict]) -> dict:
    """What was run and where: the title of the tables and the head of the JSON result."""
    cuda = args.device.type == "cuda"
    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(args.device) if cuda else f"cpu, {threads} thread{'s' * (threads > 1)}"
    peaks = sorted({r["peak_flops"] for r in results})
    if peak_is_measured(args.device):
        source = "fp32 torch.mm of 2048 x 2048 between the timed calls"
        peak = f"peak {peaks[0] / 1e9:,.1f}-{peaks[-1] / 1e9:,.1f} GFLOP/s ({source})"
    else:
        source = "data sheet, dense bf16"
        peak = f"peak {peaks[0] / 1e12:,.0f} TFLOP/s ({source})"
    memory = "torch.cuda.max_memory_allocated" if cuda else "growth of peak RSS (VmHWM), one process a model"
    precision = ("bf16 autocast" if args.bf16 else "fp32") + (", compiled" if args.compile else "")
    title = (
        f"{args.shape}: depth {shape.depth}, width {shape.width}, L {shape.length}, vocab {shape.vocab}, "
        f"batch {shape.batch}; {name}, {precision}; {peak}"
    )
    return {"title": title, "device_name": name, "peak_source": source, "memory_method": memory}


def report(args, shape: Shape, contenders: list[Contender], results: list[dict]) -> None:
    """Print the tables (rich, then markdown for the docs) and write the JSON result."""
    head = describe(args, shape, results)
    model_rows = [[c.name, f"{c.params:,}", f"{c.flops_per_token / 1e6:,.1f}"] for c in contenders]
    tables = [
        ("models", ["model", "params", "training MFLOP/token"], model_rows),
        (f"training throughput; peak memory: {head['memory_method']}",
         ["micro-batch", "model", "tokens/s", "vs reference", "MFU", "peak MiB"], throughput_rows(results)),
        ("targets", TARGET_HEADER, target_rows(results, args.device.type == "cuda" and args.bf16)),
    ]  # fmt: skip
    print(head["title"])
    for title, header, rows in tables:
        print_table(title, header, rows)
    settings = {key: str(value) if isinstance(value, torch.device) else value for key, value in vars(args).items()}
    shape_settings = asdict(shape) | {"micro_batches": list(args.micro_batches)}
    payload = {"args": settings, "shape": shape_settings, **head, "results": results}
    print(f"wrote {write_json(args.result, payload)}\n")
    print("\n\n".join([head["title"], *(f"{title}\n\n{markdown_table(h, r)}" for title, h, r in tables)]))


# ---- command line --------------------------------------------------------------------------------------
def parse_args() -> tuple[argparse.Namespace, Shape]:
    default_device = "cuda" if torch.cuda.is_available() else "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=default_device, help=f"default {default_device}")
    parser.add_argument("--shape", choices=SHAPES, help="default paper-125m on CUDA, cpu otherwise")
    parser.add_argument("--precision", choices=("bf16", "fp32"), help="default bf16 on CUDA, fp32 on a CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--micro-batches", type=int, nargs="+", help="micro-batch sizes (default: the shape's)")
    for name in OVERRIDES:
        parser.add_argument(f"--{name}", type=int, help="default: the shape's")
    parser.add_argument("--steps", type=int, default=1, help="optimizer steps per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per model at most")
    parser.add_argument(
        "--warmup", type=int, help="untimed steps per model and size (default 1 CPU, 2 CUDA, +3 compiled)"
    )
    parser.add_argument("--budget-s", type=float, help="seconds of timed calls in all (default: the shape's)")
    parser.add_argument("--threads", type=int, help="torch threads (default: the idle cores, runtime.configure)")
    parser.add_argument("--result", default="train", help="bench/results/<result>.json (default train)")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)  # internal: one model's CPU peak memory
    args = parser.parse_args()
    args.device = torch.device(args.device)
    cuda = args.device.type == "cuda"
    args.shape = args.shape or ("paper-125m" if cuda else "cpu")
    if args.shape == "paper-125m" and not cuda:
        parser.error("--shape paper-125m is for a GPU (one step takes minutes on a CPU); use --shape cpu")
    shape = replace(SHAPES[args.shape], **{k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None})
    args.micro_batches = sorted(args.micro_batches or shape.micro_batches)
    if any(m < 1 or shape.batch % m for m in args.micro_batches):
        parser.error(f"every micro-batch size must divide the batch ({shape.batch}), got {args.micro_batches}")
    args.bf16 = (args.precision or ("bf16" if cuda else "fp32")) == "bf16"
    args.warmup = max(1, args.warmup if args.warmup is not None else (2 if cuda else 1) + 3 * args.compile)
    args.budget_s = shape.budget_s if args.budget_s is None else args.budget_s
    return args, shape


def main() -> None:
    args, shape = parse_args()
    runtime.configure(args.threads)
    if args.device.type == "cuda" and not args.bf16:
        torch.set_float32_matmul_precision("high")  # TF32 for fp32 runs, as nanoGPT
    setting = Setting(args.device, args.bf16, args.compile, args.steps)
    if args.memory_probe:
        probe_memory(args.memory_probe, shape, setting, args.micro_batches)
        return
    contenders = prepare(args.models, shape, setting, args.micro_batches, args.warmup)
    results = measure(contenders, shape, args.micro_batches, args)
    report(args, shape, contenders, results)


if __name__ == "__main__":
    main()
