"""Training: one trainer for every task (AdamW, warm-up + cosine, clipping, budgets, early stop)."""

from starlab.train.trainer import TrainConfig, TrainResult, learning_rate, train

__all__ = ["TrainConfig", "TrainResult", "learning_rate", "train"]
