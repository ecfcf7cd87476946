"""Training: one trainer for every task (AdamW, warm-up + cosine, clipping, budgets, early stop, checkpoints)."""

from starlab.train.checkpoint import Checkpointing, clear_checkpoints
from starlab.train.trainer import TrainConfig, TrainResult, learning_rate, train

__all__ = ["Checkpointing", "TrainConfig", "TrainResult", "clear_checkpoints", "learning_rate", "train"]
