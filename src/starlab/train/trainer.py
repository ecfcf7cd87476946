"""One training loop for every task: AdamW, linear warm-up then cosine decay, clipping, budgets, early stop.

A run ends when it reaches ``max_steps``, its time budget, or the target score (early stop); a non-finite
loss or evaluation ends it with status ``diverged`` instead of raising, so an architecture that blows up
gets the worst quality and a search goes on. Outcomes are :class:`starlab.status.Status` values.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from starlab import runtime
from starlab.status import Status
from starlab.tasks.base import Task
from starlab.train.checkpoint import Checkpointing, TrainingState, load_checkpoint, save_checkpoint


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run.

    Attributes:
        max_steps: optimizer steps (the step budget).
        warmup_steps: linear warm-up from 0 to ``lr``; then cosine decay to ``min_lr`` at ``max_steps``.
        weight_decay: applied to matrices and embeddings only (not to norms, biases or per-channel scales).
        grad_clip: maximum global gradient norm (``None``: no clipping).
        micro_batch: split each batch into micro-batches of this many sequences and accumulate their
            gradients (``None``: the whole batch at once); the same data and, to fp32 round-off, the same
            updates, in a fraction of the activation memory. Must divide ``batch_size``.
        fit_micro_batch: when a step runs out of device memory, redo it with the next smaller divisor of
            ``batch_size`` as the micro-batch (and evaluate in batches no larger), until one fits: the largest
            micro-batch the device holds, found in the first step, without knowing the model's memory ahead.
        bf16: autocast matmuls to bfloat16 (CPU and CUDA); parameters and optimizer state stay fp32.
        compile: train through ``torch.compile(model)`` (evaluation runs the plain model: its batch shape
            differs and would compile a second graph for a handful of calls).
        log_every: read losses back to the host every this many steps (``None``: every step on CPU, where it
            costs nothing, every 16 on CUDA, where each read waits for the device). ``on_step`` still sees
            every step, in bursts, and a non-finite loss still ends the run with the step it happened at.
        eval_every: evaluate every this many steps (``None``: only at the end).
        target_score: stop early once an evaluation's ``score`` reaches it.
        time_budget_s: stop after this many seconds of training (evaluations included).
        seed: seeds the data stream (model initialisation is seeded by whoever builds the model).
        threads: torch intra-op threads (``None``: as :func:`starlab.runtime.configure` chose them, the idle cores).
    """

    lr: float = 1e-3
    max_steps: int = 1000
    batch_size: int = 64
    micro_batch: int | None = None
    fit_micro_batch: bool = False
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 0
    min_lr: float = 1e-6
    grad_clip: float | None = 1.0
    bf16: bool = False
    compile: bool = False
    log_every: int | None = None
    eval_every: int | None = None
    eval_batch_size: int = 256
    target_score: float | None = None
    time_budget_s: float | None = None
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0,
            "max_steps": self.max_steps >= 1,
            "batch_size": self.batch_size >= 1,
            "weight_decay": self.weight_decay >= 0,
            "warmup_steps": 0 <= self.warmup_steps <= self.max_steps,
            "min_lr": 0 <= self.min_lr <= self.lr,
            "eval_every": self.eval_every is None or self.eval_every >= 1,
            "log_every": self.log_every is None or self.log_every >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"TrainConfig.{name} = {getattr(self, name)!r} is out of range")
        if self.micro_batch is not None and (self.micro_batch < 1 or self.batch_size % self.micro_batch):
            raise ValueError(
                f"TrainConfig.micro_batch must divide batch_size {self.batch_size}, got {self.micro_batch!r}"
            )

    def host_reads_every(self, device: torch.device) -> int:
        return self.log_every or (16 if device.type == "cuda" else 1)


@dataclass
class TrainResult:
    """How a run ended. ``tokens_per_s``: input tokens per second of training (evaluations excluded) in this
    process, so a resumed run reports its own speed, not one diluted by the time it was down;
    ``resumed_from``: the step of the checkpoint it continued from (0: it started afresh)."""

    status: Status
    steps: int
    seconds: float
    train_loss: float
    metrics: dict[str, float] = field(default_factory=dict)  # the evaluation with the best score
    history: list[dict[str, float]] = field(default_factory=list)
    tokens_per_s: float = 0.0
    resumed_from: int = 0
    micro_batch: int | None = None  # the micro-batch trained with (``fit_micro_batch`` may have lowered it)

    @property
    def score(self) -> float:
        return self.metrics.get("score", 0.0) if self.status != Status.DIVERGED else 0.0


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine to ``min_lr`` at ``max_steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device | None = None) -> torch.optim.AdamW:
    """AdamW over trainable parameters; decay only tensors with 2+ dims (matrices, embeddings, kernels).

    On CUDA the fused implementation: one kernel for all parameters instead of several per tensor."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device is not None and device.type == "cuda"
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas, fused=fused)


def train(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, float], None] | None = None,
    checkpointing: Checkpointing | None = None,
) -> TrainResult:
    """Train ``model`` on ``task``; returns status, steps, time and the best evaluation.

    ``on_step(step, loss)`` is called for every optimizer step (progress bars hook in here), in bursts of
    ``log_every``. With ``checkpointing``, the run first continues from the newest checkpoint in its
    directory, if any (on CPU it then ends bit-identical to a run never interrupted), and writes checkpoints
    as it goes.
    """
    runtime.configure(config.threads)
    device = torch.device(device)
    model.to(device).train()
    forward = torch.compile(model) if config.compile else model
    optimizer = make_optimizer(model, config, device)
    batches = task.train_batches(config.batch_size, np.random.default_rng(config.seed))
    status, loss_value, done, trained_s = Status.COMPLETED, float("nan"), 0, 0.0
    history: list[dict[str, float]] = []
    if checkpointing is not None and (
        resumed := load_checkpoint(checkpointing.directory, model, optimizer, config.max_steps)
    ):
        done, loss_value, trained_s, history = resumed.step, resumed.loss, resumed.seconds, resumed.history
        for _ in range(done):  # the batches already trained on: drawn again, so the stream goes on exactly
            next(batches)
    start, last_checkpoint, evaluating_s, tokens = time.perf_counter() - trained_s, time.perf_counter(), 0.0, 0
    losses = LossReader(config.host_reads_every(device), on_step)
    step, micro = done, config.micro_batch

    def evaluate() -> dict[str, float]:
        nonlocal evaluating_s
        began = time.perf_counter()
        model.eval()
        with autocast(device, config.bf16):
            metrics = task.evaluate(model, min(config.eval_batch_size, micro or config.eval_batch_size), device)
        model.train()
        history.append({"step": step, "train_loss": loss_value, **metrics})
        evaluating_s += time.perf_counter() - began
        return metrics

    for step in range(done + 1, config.max_steps + 1):
        inputs, targets = (t.to(device) for t in next(batches))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step - 1, config)
        loss, micro = backward(forward, task, inputs, targets, micro, config, optimizer, device)
        losses.add(step, loss)
        tokens += inputs.numel()
        out_of_time = config.time_budget_s is not None and time.perf_counter() - start > config.time_budget_s
        evaluating = (config.eval_every and step % config.eval_every == 0) or step == config.max_steps or out_of_time
        saving = checkpointing is not None and checkpointing.due(step, time.perf_counter() - last_checkpoint)
        if (diverged_at := losses.read(force=evaluating or saving)) is not None:
            status, step, loss_value = Status.DIVERGED, diverged_at, float("nan")
            break
        loss_value = losses.last
        if config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if evaluating:
            metrics = evaluate()
            if not all(math.isfinite(v) for v in metrics.values()):
                status = Status.DIVERGED
                break
            if config.target_score is not None and metrics["score"] >= config.target_score:
                status = Status.EARLY_STOPPED
                break
        if out_of_time:
            status = Status.OUT_OF_TIME
            break
        if saving:
            state = TrainingState(step, loss_value, time.perf_counter() - start, history)
            save_checkpoint(checkpointing.directory, model, optimizer, state)
            last_checkpoint = time.perf_counter()
    seconds = time.perf_counter() - start
    training_s = seconds - trained_s - evaluating_s
    best = max(history, key=lambda h: h["score"]) if history and status != Status.DIVERGED else {}
    metrics = {k: v for k, v in best.items() if k not in ("step", "train_loss")}
    tokens_per_s = tokens / training_s if training_s > 0 else 0.0
    return TrainResult(status, step, seconds, loss_value, metrics, history, tokens_per_s, done, micro)


class LossReader:
    """Step losses kept on the device and read back to the host in one transfer every ``every`` steps.

    Reading a CUDA tensor waits for every queued kernel, so reading each step's loss would keep the host
    from queueing the next step while the device works. ``read`` returns the first step whose loss was not
    finite (``None`` if all were), after passing each earlier step to ``on_step``.
    """

    def __init__(self, every: int, on_step: Callable[[int, float], None] | None) -> None:
        self.every, self.on_step = every, on_step
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.last = float("nan")

    def add(self, step: int, loss: torch.Tensor) -> None:
        self.pending.append((step, loss))

    def read(self, force: bool = False) -> int | None:
        if not self.pending or (len(self.pending) < self.every and not force):
            return None
        values = torch.stack([loss for _, loss in self.pending]).tolist()
        steps = [step for step, _ in self.pending]
        self.pending.clear()
        for step, value in zip(steps, values, strict=True):
            if not math.isfinite(value):
                return step
            self.last = value
            if self.on_step is not None:
                self.on_step(step, value)
        return None


def backward(
    forward: Callable[[torch.Tensor], torch.Tensor],
    task: Task,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    micro_batch: int | None,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> tuple[torch.Tensor, int | None]:
    """The batch's gradients (optimizer's cleared first) and loss, and the micro-batch that computed them: with
    ``fit_micro_batch``, each out-of-memory error lowers it to the next divisor of the batch and starts over."""
    while True:
        optimizer.zero_grad(set_to_none=True)
        try:
            return accumulate(forward, task, inputs, targets, micro_batch, config.bf16, device), micro_batch
        except torch.cuda.OutOfMemoryError:
            micro_batch = smaller_micro_batch(config.batch_size, micro_batch) if config.fit_micro_batch else None
            if micro_batch is None:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()


def smaller_micro_batch(batch_size: int, micro_batch: int | None) -> int | None:
    """The largest divisor of ``batch_size`` below ``micro_batch`` (the whole batch when ``None``), if any."""
    below = batch_size if micro_batch is None else micro_batch
    return next((size for size in range(below - 1, 0, -1) if batch_size % size == 0), None)


def accumulate(
    model: Callable[[torch.Tensor], torch.Tensor],
    task: Task,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    micro_batch: int | None,
    bf16: bool,
    device: torch.device,
) -> torch.Tensor:
    """Forward and backward over ``micro_batch``-sized pieces of the batch (all of it at once when ``None``),
    each loss weighted by its share of the batch's scored terms; returns the batch's loss."""
    if micro_batch is None or micro_batch >= len(inputs):
        with autocast(device, bf16):
            loss = task.loss(model(inputs), targets)
        loss.backward()
        return loss.detach()
    pieces = list(zip(inputs.split(micro_batch), targets.split(micro_batch), strict=True))
    counts = [task.scored(piece_targets) for _, piece_targets in pieces]
    total, batch_loss = sum(counts), torch.zeros((), device=device)
    for (piece_inputs, piece_targets), count in zip(pieces, counts, strict=True):
        with autocast(device, bf16):
            loss = task.loss(model(piece_inputs), piece_targets) * (count / total)
        loss.backward()
        batch_loss += loss.detach()
    return batch_loss


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
