"""Assessment protocols that train models: MAD (paper, quick, demo, tiny) and language modelling.

Every MAD protocol runs the same code — generate each setting's data, train a fresh model per (lr, weight
decay) pair, keep the best test score per setting, average settings per task and tasks into the MAD score —
with different numbers. ``paper`` is the paper's protocol (GPU/cluster scale); ``quick``, ``demo`` and ``tiny``
are scaled for 2 CPU cores (calibration in ``docs/tasks.md``). Quality = 1 - MAD score.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import mean

import torch

from starlab.genome import Genome
from starlab.model import AutoEncoder, Backbone
from starlab.tasks.base import Task
from starlab.tasks.lm import lm_task
from starlab.tasks.mad import MAD_TASKS, PAPER_SEED, MADSetting, paper_settings
from starlab.train.assess import DIVERGED, OK, Outcome, Progress, Protocol, register_protocol
from starlab.train.trainer import TrainConfig, TrainResult, train


def build_model(genome: Genome, task: Task, width: int, config) -> torch.nn.Module:
    """MAD's model for a task: an untied language model, or the autoencoder for compression."""
    backbone = Backbone(genome, width, task.vocab_size, config, tie_embeddings=False)
    return AutoEncoder(backbone, task.seq_len) if task.autoencoder else backbone


_TASKS: dict[tuple, Task] = {}


def setting_task(setting: MADSetting, seed: int) -> Task:
    """Data of one setting, generated once per process (every genome a worker assesses reuses it)."""
    key = (setting.task, tuple(sorted(setting.params.items())), setting.num_train, setting.num_test, seed)
    if key not in _TASKS:
        _TASKS[key] = setting.build(seed)
    return _TASKS[key]


@dataclass(frozen=True, eq=False)
class MADProtocol(Protocol):
    """Train on each setting for every (lr, weight decay) in ``grid``; quality = 1 - mean task score.

    Attributes:
        settings: the task settings.
        grid: (learning rate, weight decay) pairs; a setting's score is its best over the grid.
        epochs: passes over each setting's training set (cosine decay to ``min_lr`` over them).
        task_epochs: per-task exceptions to ``epochs`` (memorization's tiny training set needs more passes).
        evaluations: evaluations per run, evenly spread (the run keeps its best; early stop at ``target``).
    """

    name: str
    description: str
    settings: tuple[MADSetting, ...]
    grid: tuple[tuple[float, float], ...]
    epochs: int
    batch_size: int
    width: int
    warmup_fraction: float = 0.0
    min_lr: float = 1e-6
    evaluations: int = 4
    target: float = 0.999
    data_seed: int = PAPER_SEED
    time_budget_s: float | None = None
    task_epochs: tuple[tuple[str, int], ...] = ()

    def train_config(self, task: Task, lr: float, weight_decay: float, seed: int) -> TrainConfig:
        epochs = dict(self.task_epochs).get(task.name, self.epochs)
        steps = epochs * task.steps_per_epoch(self.batch_size)
        return TrainConfig(
            lr=lr, weight_decay=weight_decay, max_steps=steps, batch_size=self.batch_size,
            warmup_steps=int(self.warmup_fraction * steps), min_lr=min(self.min_lr, lr), betas=(0.9, 0.98),
            eval_every=max(1, steps // self.evaluations), target_score=self.target, seed=seed,
            eval_batch_size=max(self.batch_size, 256), time_budget_s=self.time_budget_s,
        )  # fmt: skip

    def run_setting(
        self, genome: Genome, setting: MADSetting, width: int, seed: int, device, progress: Progress | None = None
    ) -> list[TrainResult]:
        task = setting_task(setting, self.data_seed)
        results = []
        for lr, weight_decay in self.grid:
            if progress:
                progress(f"{setting.name}, lr {lr:g}, wd {weight_decay:g}")
            torch.manual_seed(seed)
            model = build_model(genome, task, width, self.config)
            results.append(train(model, task, self.train_config(task, lr, weight_decay, seed), device))
            if results[-1].score >= self.target:
                break  # the rest of the grid cannot do better
        return results

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None
    ) -> Outcome:
        per_setting, details = {}, {}
        for setting in self.settings:
            results = self.run_setting(genome, setting, width, seed, device, progress)
            best = max(results, key=lambda r: r.score)
            per_setting[setting.name] = (setting.task, best)
            details[setting.name] = {
                "score": best.score,
                "accuracy": best.metrics.get("accuracy", 0.0),
                "status": best.status,
                "steps": best.steps,
                "runs": len(results),
            }
        tasks: dict[str, list[TrainResult]] = {}
        for task, best in per_setting.values():
            tasks.setdefault(task, []).append(best)
        scores = {task: mean(r.score for r in bests) for task, bests in tasks.items()}
        accuracy = {task: mean(r.metrics.get("accuracy", 0.0) for r in bests) for task, bests in tasks.items()}
        mad_score = mean(scores.values())
        all_diverged = all(r.status == DIVERGED for _, r in per_setting.values())
        metrics = {"mad_score": mad_score, "token_accuracy": accuracy, "settings": details}
        return Outcome(quality=1.0 - mad_score, scores=scores, status=DIVERGED if all_diverged else OK, metrics=metrics)


def _setting(task: str, num_train: int, num_test: int, **params) -> MADSetting:
    """A setting from the task's baseline parameters with some replaced."""
    return MADSetting(task, {**MAD_TASKS[task].defaults, **params}, num_train, num_test)


PAPER_GRID = ((1e-4, 0.0), (1e-4, 0.1), (5e-4, 0.0), (5e-4, 0.1), (1e-3, 0.0), (1e-3, 0.1))

register_protocol(MADProtocol(
    name="paper",
    description="MAD as published: 66 settings x lr {1e-4,5e-4,1e-3} x wd {0,0.1}, up to 200 epochs, width 128",
    settings=tuple(paper_settings()), grid=PAPER_GRID, epochs=200, batch_size=128, width=128, evaluations=200,
))  # fmt: skip

QUICK_SETTINGS = (
    _setting("in-context-recall", 2000, 256, vocab_size=16, seq_len=32),
    _setting("fuzzy-in-context-recall", 1000, 256, vocab_size=16, seq_len=32),
    _setting("noisy-in-context-recall", 2000, 256, vocab_size=32, seq_len=32),
    _setting("selective-copying", 2000, 256, vocab_size=16, seq_len=32, num_tokens_to_copy=8),
    _setting("compression", 2000, 256, vocab_size=16, seq_len=16),
    _setting("memorization", 256, 256, vocab_size=256, seq_len=32),
)

register_protocol(MADProtocol(
    name="quick",
    description="all six MAD tasks, one small setting each, one lr/wd: about a minute per 4-slot genome on 2 cores",
    settings=QUICK_SETTINGS, grid=((5e-3, 0.1),), epochs=8, batch_size=64, width=48, warmup_fraction=0.05,
    task_epochs=(("memorization", 32),),
))  # fmt: skip

register_protocol(MADProtocol(
    name="demo",
    description="recall, selective copying and memorization, small: a whole search in minutes",
    settings=(
        _setting("in-context-recall", 1500, 256, vocab_size=16, seq_len=32),
        _setting("selective-copying", 1500, 256, vocab_size=16, seq_len=32, num_tokens_to_copy=8),
        QUICK_SETTINGS[5],
    ),
    grid=((5e-3, 0.1),), epochs=5, batch_size=64, width=32, warmup_fraction=0.05, evaluations=2,
    task_epochs=(("memorization", 16),),
))  # fmt: skip

register_protocol(MADProtocol(
    name="tiny",
    description="in-context recall only, tiny: for tests",
    settings=(_setting("in-context-recall", 1000, 128, vocab_size=8, seq_len=16),),
    grid=((3e-3, 0.0),), epochs=12, batch_size=32, width=32, warmup_fraction=0.05, evaluations=3,
))  # fmt: skip


# ---- language modelling ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LMProtocol(Protocol):
    """Next-token training on text (default: the bundled smoke corpus); quality = validation perplexity.

    ``data`` is a local corpus (file, directory, jsonl, parquet); a search passes its ``--data`` here.
    ``requires_data`` protocols refuse the bundled smoke corpus: their budget only makes sense on real text.
    """

    name: str
    description: str
    width: int
    seq_len: int
    steps: int
    batch_size: int
    lr: float = 3e-3
    warmup_steps: int = 0
    weight_decay: float = 0.1
    tokenizer: str = "byte"
    vocab_size: int | None = None
    max_eval_tokens: int = 1 << 16
    data: str | None = None
    requires_data: bool = False

    @property
    def worst_quality(self) -> float:
        """The perplexity of a uniform guess over the vocabulary."""
        return float(self.vocab_size or 256)

    def with_data(self, data: str | None) -> LMProtocol:
        if data is None and self.data is None and self.requires_data:
            raise ValueError(f"the {self.name} protocol trains on a real corpus: give one with --data PATH")
        return self if data is None else replace(self, data=data)

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None
    ) -> Outcome:
        if progress:
            progress(f"{self.steps} steps of {self.batch_size} x {self.seq_len} tokens")
        task = lm_task(self.data, self.seq_len, self.tokenizer, self.vocab_size, max_eval_tokens=self.max_eval_tokens)
        torch.manual_seed(seed)
        model = Backbone(genome, width, task.vocab_size, self.config)
        config = TrainConfig(
            lr=self.lr, max_steps=self.steps, batch_size=self.batch_size, warmup_steps=self.warmup_steps,
            weight_decay=self.weight_decay, min_lr=self.lr / 10, seed=seed, eval_batch_size=self.batch_size,
            bf16=device.type == "cuda",
        )  # fmt: skip
        result = train(model, task, config, device)
        if result.status == DIVERGED:
            return Outcome(self.worst_quality, {task.name: 0.0}, DIVERGED)
        perplexity = min(result.metrics["perplexity"], self.worst_quality)
        return Outcome(perplexity, {task.name: result.score}, OK, {"perplexity": perplexity, "steps": result.steps})


register_protocol(LMProtocol(
    name="lm-quick", description="byte-level LM on the bundled corpus: 300 steps of 16 x 128 tokens, width 64",
    width=64, seq_len=128, steps=300, batch_size=16, warmup_steps=30,
))  # fmt: skip
register_protocol(LMProtocol(
    name="lm-tiny", description="byte-level LM on the bundled corpus, 30 steps: for tests",
    width=32, seq_len=32, steps=30, batch_size=8, warmup_steps=3,
))  # fmt: skip
register_protocol(LMProtocol(
    name="lm-paper",
    description="the paper's per-candidate budget: 5,000 steps x 64 x 4096 tokens (1.3B), lr 8e-4, 500 warm-up "
    "steps, BPE 32k; needs a corpus (--data); GPU/cluster scale",
    width=768, seq_len=4096, steps=5000, batch_size=64, lr=8e-4, warmup_steps=500, tokenizer="bpe",
    vocab_size=32768, max_eval_tokens=1 << 22, requires_data=True,
))  # fmt: skip
