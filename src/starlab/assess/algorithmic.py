"""Algorithmic protocols: the tasks of *Algorithmic Capabilities of Random Transformers*, one protocol each.

``algo-mod-add``, ``algo-needle``, ``algo-decimal``, ``algo-parentheses``, ``algo-memorization`` and
``algo-circuit`` train a genome on one task at its ``cpu`` size with the size's recommended budget (AdamW,
warm-up then cosine to 0, clipping); ``size="paper"`` selects the paper's sizes and budgets, and
``embedding_only=True`` the paper's setting where everything but the embeddings and unembedding stays at
its random initialisation. ``backbone="gpt2"`` builds the paper's network itself (Hugging Face GPT-2, see
``starlab.model.flavours``). Quality = 1 - the task's score (accuracy, or exp(-KL) for circuit imitation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from starlab.assess.protocol import (
    POSITIVE,
    SEED,
    Outcome,
    Progress,
    Protocol,
    Range,
    register_protocol,
    step_reporter,
)
from starlab.assess.record import Evaluation
from starlab.genome import Genome
from starlab.model import FLAVOURS, BackboneSpec, get_flavour
from starlab.status import Status
from starlab.tasks.algorithmic import ALGORITHMIC_TASKS, SIZES, TrainingBudget, make_algorithmic_task
from starlab.tasks.base import Task
from starlab.train import Checkpointing, TrainConfig, train

_TASKS: dict[tuple[str, str, int], Task] = {}


def cached_task(name: str, size: str, seed: int) -> Task:
    """A task's data, generated once per process (every genome a worker assesses reuses it)."""
    key = (name, size, seed)
    if key not in _TASKS:
        _TASKS[key] = make_algorithmic_task(name, size, seed)
    return _TASKS[key]


@dataclass(frozen=True, kw_only=True, eq=False)
class AlgorithmicProtocol(Protocol):
    """Train on one algorithmic task; quality = 1 - score.

    Attributes:
        task: the task name (``parentheses``, ``circuit-imitation``...).
        size: ``cpu`` or ``paper`` (task sizes and the budget recommended for them).
        embedding_only: train only the embeddings and the unembedding (the random-transformer setting).
        positions: learned absolute positions in front of the backbone (the paper's GPT-2 has them).
        backbone: the flavour the genome is built in: ``star`` or ``gpt2`` (``starlab.model.flavours``).
        steps: optimizer steps (``None``: the size's budget).
        data_seed: seeds the task's data (``None``: the assessment seed, as ``starlab algo --seed`` does).
        evaluations: evaluations per run, evenly spread; the run keeps its best.
    """

    kind: ClassVar[str] = "algorithmic"
    quality_meaning: ClassVar[str] = "1 − the task's score (accuracy or solved fraction)"
    RANGES: ClassVar[dict[str, Range]] = {"data_seed": SEED, "evaluations": POSITIVE, "steps": POSITIVE}
    task: str
    size: str = "cpu"
    embedding_only: bool = False
    positions: bool = True
    backbone: str = "star"
    steps: int | None = None
    data_seed: int | None = None
    evaluations: int = 10
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not all(0 <= beta < 1 for beta in self.betas):
            self._refuse("betas", "two numbers in [0, 1)", self.betas)
        if self.backbone not in FLAVOURS:
            self._refuse("backbone", f"one of {', '.join(FLAVOURS)}", self.backbone)
        if self.task not in ALGORITHMIC_TASKS:
            raise ValueError(f"unknown algorithmic task {self.task!r}; tasks: {', '.join(ALGORITHMIC_TASKS)}")
        if self.size not in SIZES[self.task]:
            raise ValueError(f"unknown size {self.size!r} for {self.task}; sizes: {', '.join(SIZES[self.task])}")

    @property
    def budget(self) -> TrainingBudget:
        return SIZES[self.task][self.size].budget

    @property
    def width(self) -> int:
        return self.budget.width

    @property
    def preset_depth(self) -> int:
        """Two slots (mixer and MLP) per block of the budget: a preset has the depth its budget was chosen for."""
        return 2 * self.budget.layers

    def describe(self, evaluation: Evaluation) -> dict[str, Any]:
        """The task's score and metrics, how the run trained (size, mode, backbone, steps), and how many of the
        parameters trained."""
        metrics = evaluation.metrics
        return {
            "genome": evaluation.genome, "task": self.task, "size": self.size, "embedding_only": self.embedding_only,
            "backbone": self.backbone, "width": evaluation.width, "status": metrics["run_status"],
            "steps": metrics["steps"], "score": evaluation.scores[self.task], "metrics": metrics["task_metrics"],
            "trainable_params": metrics["trainable_params"], "params": metrics["total_params"],
            "seconds": evaluation.seconds,
        }  # fmt: skip

    def train_config(self, seed: int, device: str | torch.device = "cpu") -> TrainConfig:
        budget, steps = self.budget, self.steps or self.budget.steps
        return TrainConfig(
            lr=budget.lr, weight_decay=budget.weight_decay, max_steps=steps, batch_size=budget.batch_size,
            warmup_steps=min(budget.warmup_steps, steps), min_lr=0.0, grad_clip=budget.grad_clip,
            eval_every=max(1, steps // self.evaluations), seed=seed, betas=self.betas, bf16=self.uses_bf16(device),
        )  # fmt: skip

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> Outcome:  # fmt: skip
        task = cached_task(self.task, self.size, seed if self.data_seed is None else self.data_seed)
        torch.manual_seed(seed)
        positions = task.seq_len if self.positions else None
        spec = BackboneSpec(genome, width, task.vocab_size, self.config, tie_embeddings=False, max_positions=positions)
        model = get_flavour(self.backbone).build(spec)
        if self.embedding_only:
            model.freeze_all_but_embeddings()
        config = self.train_config(seed, device)
        stage = f"{self.task} ({'embedding-only' if self.embedding_only else 'full'})"
        result = train(model, task, config, device, on_step=step_reporter(progress, stage, config.max_steps))
        metrics = {
            "run_status": result.status.value,
            "steps": result.steps,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_params": model.num_params(),
            "task_metrics": result.metrics,
        }
        if result.status == Status.DIVERGED:
            return Outcome(self.worst_quality, {self.task: 0.0}, Status.DIVERGED, metrics)
        return Outcome(1.0 - result.score, {self.task: result.score}, Status.OK, metrics)

    def training(self) -> dict[str, Any]:
        budget, steps = self.budget, self.steps or self.budget.steps
        mode = "embeddings only" if self.embedding_only else "all weights"
        flavour = "" if self.backbone == "star" else f", {self.backbone} backbone"
        return {
            "summary": f"{self.task} ({self.size} size): {steps} steps of batch {budget.batch_size}, "
            f"lr {budget.lr:g}, {mode}{flavour}",
            "task": self.task,
            "size": self.size,
            "steps": steps,
            "batch_size": budget.batch_size,
            "lr": budget.lr,
            "embedding_only": self.embedding_only,
            "backbone": self.backbone,
        }


ALGORITHMIC_PROTOCOLS = {
    "algo-mod-add": "modular-addition",
    "algo-needle": "needle",
    "algo-decimal": "decimal-addition",
    "algo-parentheses": "parentheses",
    "algo-memorization": "memorization",
    "algo-circuit": "circuit-imitation",
}

#: Seconds per 4-slot transformer++ on 2 threads (``bench/protocols.py``: mod-add run whole, the others
#: extrapolated from 250 and 500 steps to their budget; other machines up to ~3.5x slower).
MEASURED_COST_S = {
    "algo-mod-add": 364.0, "algo-needle": 885.0, "algo-decimal": 751.0, "algo-parentheses": 223.0,
    "algo-memorization": 209.0, "algo-circuit": 341.0,
}  # fmt: skip


def protocol_for_task(task: str) -> str:
    """The registered protocol of an algorithmic task (``parentheses`` -> ``algo-parentheses``)."""
    by_task = {t: name for name, t in ALGORITHMIC_PROTOCOLS.items()}
    if task not in by_task:
        raise ValueError(f"unknown algorithmic task {task!r}; tasks: {', '.join(by_task)}")
    return by_task[task]


for _name, _task in ALGORITHMIC_PROTOCOLS.items():
    register_protocol(AlgorithmicProtocol(
        name=_name, task=_task, description=f"random-transformer suite: {_task} at the cpu size, all weights trained",
        cost_s=MEASURED_COST_S[_name],
    ))  # fmt: skip
