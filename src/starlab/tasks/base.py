"""What every task gives the trainer: endless training batches, a loss, and metrics on fixed held-out data.

Tasks produce CPU int64 tensors; ``-100`` marks target positions that are not scored (and not trained on).
Randomness comes only from the ``numpy.random.Generator`` passed in, never from global state, so a task and
a seed determine every batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100

#: A model as tasks see it: token ids ``(batch, length)`` -> logits ``(batch, length, vocab)``.
Model = Callable[[Tensor], Tensor]


class Task(ABC):
    """A training objective with a held-out evaluation.

    Attributes:
        name: short name for tables and results.
        vocab_size: token ids are in ``0 .. vocab_size - 1``.
        seq_len: the longest input a model must handle (positions, for learned position embeddings).
        autoencoder: the model reads the whole input and decodes every position from the last position's
            state (MAD's compression task) instead of predicting next tokens.
    """

    name: str
    vocab_size: int
    seq_len: int
    autoencoder: bool = False

    @abstractmethod
    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless ``(inputs, targets)`` batches drawn with ``rng``."""

    def steps_per_epoch(self, batch_size: int) -> int | None:
        """Batches per pass over a fixed training set; ``None`` for streamed tasks."""
        return None

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy over scored positions."""
        return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE)

    def scored(self, targets: Tensor) -> Tensor:
        """How many terms :meth:`loss` averages over: micro-batches are weighted by it, so that accumulated
        gradients equal the whole batch's even where micro-batches score different numbers of positions."""
        return (targets != IGNORE).sum()

    @abstractmethod
    def evaluate(self, model: Model, batch_size: int, device: torch.device) -> dict[str, float]:
        """Metrics on the fixed held-out set. Must include ``score``: higher is better, 1.0 is solved."""


def batched(arrays: tuple[np.ndarray, ...], batch_size: int, device: torch.device) -> Iterator[tuple[Tensor, ...]]:
    """Consecutive batches of equally long arrays, as int64 tensors on ``device``."""
    for start in range(0, len(arrays[0]), batch_size):
        yield tuple(torch.as_tensor(a[start : start + batch_size], dtype=torch.long, device=device) for a in arrays)


class ArrayTask(Task):
    """A task with fixed training and test arrays (MAD, modular addition, memorization tables).

    Training reshuffles the training set every epoch with the given generator. Evaluation scores every test
    position whose target is not ``-100``: plain token accuracy, and MAD's macro accuracy (per-class recall
    averaged over the classes that occur as targets or predictions, computed over the whole test set).
    """

    def __init__(
        self,
        name: str,
        train: tuple[np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray],
        vocab_size: int,
        score: str = "macro_accuracy",
        autoencoder: bool = False,
    ) -> None:
        self.name, self.train, self.test = name, train, test
        self.vocab_size, self.autoencoder = vocab_size, autoencoder
        self.seq_len = int(train[0].shape[1])
        if score not in ("macro_accuracy", "accuracy"):
            raise ValueError(f"score must be 'macro_accuracy' or 'accuracy', got {score!r}")
        self.score = score

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train[0]) // batch_size)

    def train_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        inputs, targets = self.train
        while True:
            order = rng.permutation(len(inputs))
            yield from batched((inputs[order], targets[order]), batch_size, torch.device("cpu"))

    @torch.no_grad()
    def evaluate(self, model: Model, batch_size: int, device: torch.device) -> dict[str, float]:
        predictions, targets = [], []
        for inputs, target in batched(self.test, batch_size, device):
            scored = target != IGNORE
            predictions.append(model(inputs).argmax(dim=-1)[scored].cpu())
            targets.append(target[scored].cpu())
        metrics = accuracy_metrics(torch.cat(predictions), torch.cat(targets), self.vocab_size)
        return {**metrics, "score": metrics[self.score]}


def accuracy_metrics(predictions: Tensor, targets: Tensor, num_classes: int) -> dict[str, float]:
    """Token accuracy and macro accuracy of flat prediction/target vectors."""
    if targets.numel() == 0:
        return {"accuracy": 0.0, "macro_accuracy": 0.0, "scored": 0}
    correct = predictions == targets
    counts = torch.bincount(targets, minlength=num_classes)
    hits = torch.bincount(targets[correct], minlength=num_classes)
    predicted = torch.bincount(predictions, minlength=num_classes)
    present = (counts + predicted) > 0  # a class only ever predicted (wrongly) counts, with recall 0
    recall = torch.where(counts > 0, hits / counts.clamp(min=1), torch.zeros_like(hits, dtype=torch.float))
    return {
        "accuracy": correct.float().mean().item(),
        "macro_accuracy": recall[present].mean().item(),
        "scored": int(targets.numel()),
    }
