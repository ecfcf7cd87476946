"""MAD protocols (paper, quick, demo, tiny): quality = 1 - MAD score.

Every MAD protocol runs the same code — generate each setting's data, train a fresh model per (lr, weight
decay) pair, keep the best test score per setting, average settings per task and tasks into the MAD score —
with different numbers. ``paper`` is the paper's protocol (GPU/cluster scale); ``quick``, ``demo`` and ``tiny``
are scaled for 2 CPU cores (calibration in ``docs/tasks.md``). ``cost_s`` values are the means measured by
``bench/protocols.py`` (transformer++ and striped-mamba, 4 slots, 2 threads; other machines up to ~3.5x slower).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from statistics import mean
from typing import Any, ClassVar, NoReturn

import torch

from starlab.assess.protocol import POSITIVE, SEED, Outcome, Progress, Protocol, Range, register_protocol
from starlab.assess.record import Evaluation
from starlab.errors import SettingError
from starlab.genome import Genome
from starlab.liv import LIVConfig
from starlab.model import AutoEncoder, Backbone
from starlab.status import Status
from starlab.tasks.base import Task
from starlab.tasks.mad import MAD_TASKS, PAPER_SEED, MADSetting, paper_settings
from starlab.train import Checkpointing, TrainConfig, TrainResult, train


def build_model(genome: Genome, task: Task, width: int, config: LIVConfig) -> torch.nn.Module:
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


@dataclass(frozen=True, kw_only=True, eq=False)
class MADProtocol(Protocol):
    """Train on each setting for every (lr, weight decay) in ``grid``; quality = 1 - mean task score.

    Attributes:
        settings: the task settings.
        grid: (learning rate, weight decay) pairs; a setting's score is its best over the grid.
        epochs: passes over each setting's training set (cosine decay to ``min_lr`` over them).
        task_epochs: per-task exceptions to ``epochs`` (memorization's tiny training set needs more passes).
        evaluations: evaluations per run, evenly spread (the run keeps its best; early stop at ``target``).
    """

    kind: ClassVar[str] = "mad"
    quality_meaning: ClassVar[str] = "1 − MAD score (mean accuracy over the MAD tasks)"
    RANGES: ClassVar[dict[str, Range]] = {
        "epochs": POSITIVE, "batch_size": POSITIVE, "evaluations": POSITIVE, "warmup_fraction": Range(0, 1),
        "min_lr": Range(0), "target": Range(0, 1, open_low=True), "data_seed": SEED,
        "time_budget_s": Range(0, open_low=True),
    }  # fmt: skip
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.settings:
            self._refuse("settings", "at least one MAD setting", self.settings)
        if not self.grid or not all(lr > 0 and weight_decay >= 0 for lr, weight_decay in self.grid):
            self._refuse("grid", "a non-empty list of [learning rate > 0, weight decay >= 0] pairs", self.grid)
        for task, epochs in self.task_epochs:
            if task not in MAD_TASKS or epochs < 1:
                allowed = f"[task, epochs >= 1] pairs of tasks {', '.join(MAD_TASKS)}"
                self._refuse("task_epochs", allowed, self.task_epochs)

    def _refuse(self, setting: str, allowed: str, value: Any) -> NoReturn:
        """The base message, except for ``settings``, whose name made it read "setting settings must be ...";
        that one says what the setting holds (and that text cannot give one: it is the protocol's own)."""
        if setting != "settings":
            super()._refuse(setting, allowed, value)
        shown = repr(value) if len(repr(value)) <= 60 else f"{repr(value)[:40]}…"
        if isinstance(value, (list, tuple)) and not value:
            what = "must hold at least one MAD task"
        else:
            what = "are MADSetting objects, which text cannot give (to train on fewer tasks: `starlab mad --tasks`)"
        raise ValueError(f"protocol {self.name!r}: its task settings ('settings') {what}, got {shown}")

    def only(self, tasks: Iterable[str]) -> MADProtocol:
        """This protocol restricted to the settings of ``tasks`` (MAD task names)."""
        tasks = list(tasks)
        unknown = sorted(set(tasks) - set(MAD_TASKS))
        if unknown:
            raise SettingError("unknown MAD task(s) {0}; tasks: {1}", ", ".join(unknown), ", ".join(MAD_TASKS))
        own = sorted({s.task for s in self.settings}, key=list(MAD_TASKS).index)
        if not set(tasks) & set(own):
            raise SettingError("protocol {0!r} has no settings of {1}; its tasks: {2}", self.name, ", ".join(tasks),
                               ", ".join(own))  # fmt: skip
        return self.with_settings(settings=tuple(s for s in self.settings if s.task in tasks))

    def steps(self, setting: MADSetting) -> int:
        """Optimizer steps of one run on ``setting`` (known without generating its data)."""
        epochs = dict(self.task_epochs).get(setting.task, self.epochs)
        return epochs * -(-setting.num_train // self.batch_size)

    def train_config(
        self, setting: MADSetting, lr: float, weight_decay: float, seed: int, device: str | torch.device = "cpu"
    ) -> TrainConfig:
        steps = self.steps(setting)
        return TrainConfig(
            lr=lr, weight_decay=weight_decay, max_steps=steps, batch_size=self.batch_size,
            warmup_steps=int(self.warmup_fraction * steps), min_lr=min(self.min_lr, lr), betas=(0.9, 0.98),
            eval_every=max(1, steps // self.evaluations), target_score=self.target, seed=seed,
            eval_batch_size=max(self.batch_size, 256), time_budget_s=self.time_budget_s,
            bf16=self.uses_bf16(device),
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
            results.append(train(model, task, self.train_config(setting, lr, weight_decay, seed, device), device))
            if results[-1].score >= self.target:
                break  # the rest of the grid cannot do better
        return results

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> Outcome:  # fmt: skip
        per_setting, details = {}, {}
        for setting in self.settings:
            results = self.run_setting(genome, setting, width, seed, device, progress)
            best = max(results, key=lambda r: r.score)
            per_setting[setting.name] = (setting.task, best)
            details[setting.name] = {
                "score": best.score,
                "accuracy": best.metrics.get("accuracy", 0.0),
                "status": best.status.value,
                "steps": best.steps,
                "runs": len(results),
            }
        tasks: dict[str, list[TrainResult]] = {}
        for task, best in per_setting.values():
            tasks.setdefault(task, []).append(best)
        scores = {task: mean(r.score for r in bests) for task, bests in tasks.items()}
        accuracy = {task: mean(r.metrics.get("accuracy", 0.0) for r in bests) for task, bests in tasks.items()}
        mad_score = mean(scores.values())
        all_diverged = all(r.status == Status.DIVERGED for _, r in per_setting.values())
        metrics = {"mad_score": mad_score, "token_accuracy": accuracy, "settings": details}
        status = Status.DIVERGED if all_diverged else Status.OK
        return Outcome(quality=1.0 - mad_score, scores=scores, status=status, metrics=metrics)

    def describe(self, evaluation: Evaluation) -> dict[str, Any]:
        """The MAD score (1 - quality), per-task scores and token accuracy, and each setting's best run."""
        metrics = evaluation.metrics
        return {
            "genome": evaluation.genome, "hash": evaluation.hash, "protocol": evaluation.protocol,
            "mad_score": 1 - evaluation.quality, "tasks": evaluation.scores,
            "token_accuracy": metrics["token_accuracy"], "settings": metrics["settings"], "params": evaluation.params,
            "cache_bytes": evaluation.cache_bytes,
            "seconds": evaluation.seconds, "status": evaluation.status, "width": evaluation.width,
        }  # fmt: skip

    def training(self) -> dict[str, Any]:
        tasks = sorted({s.task for s in self.settings}, key=list(MAD_TASKS).index)
        steps = sum(self.steps(s) for s in self.settings)
        return {
            "summary": f"{_count(len(tasks), 'task')}, {_count(len(self.settings), 'setting')} x "
            f"{len(self.grid)} lr/wd, {self.epochs} epochs of batch {self.batch_size} "
            f"(at most {steps * len(self.grid):,} steps)",
            "tasks": tasks,
            "settings": len(self.settings),
            "grid": [list(pair) for pair in self.grid],
            "epochs": self.epochs,
            "task_epochs": dict(self.task_epochs),
            "batch_size": self.batch_size,
            "steps": steps * len(self.grid),  # at most: a run stops early at the target score
        }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


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
    task_epochs=(("memorization", 32),), cost_s=23.0,
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
    task_epochs=(("memorization", 16),), cost_s=4.5,
))  # fmt: skip

register_protocol(MADProtocol(
    name="tiny",
    description="in-context recall only, tiny: for tests",
    settings=(_setting("in-context-recall", 1000, 128, vocab_size=8, seq_len=16),),
    grid=((3e-3, 0.0),), epochs=12, batch_size=32, width=32, warmup_fraction=0.05, evaluations=3, cost_s=2.0,
))  # fmt: skip
