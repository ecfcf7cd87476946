"""Training and assessment: one trainer for every task, and the assessment API evolution calls."""

from starlab.train.trainer import (
    COMPLETED,
    DIVERGED,
    EARLY_STOPPED,
    OUT_OF_TIME,
    TrainConfig,
    TrainResult,
    learning_rate,
    train,
)

__all__ = [
    "COMPLETED",
    "DIVERGED",
    "EARLY_STOPPED",
    "OUT_OF_TIME",
    "TrainConfig",
    "TrainResult",
    "learning_rate",
    "train",
]
