"""Tasks: MAD synthetics, the random-transformer algorithmic suite and language modelling."""

from starlab.tasks.base import IGNORE, ArrayTask, Task, accuracy_metrics

__all__ = ["IGNORE", "ArrayTask", "Task", "accuracy_metrics"]
