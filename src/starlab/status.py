"""The one vocabulary of outcomes, shared by the trainer, the protocols, the run store and the report.

A *training run* ends ``completed`` (its whole step budget), ``early_stopped`` (it reached the target score),
``out_of_time`` (its time budget) or ``diverged`` (a non-finite loss or evaluation). An *evaluation* (one
genome under one protocol) is ``ok`` when it measured a quality, ``diverged`` when every run it trained
diverged, and ``failed`` when it raised or its worker died; the last two get the protocol's worst quality.

It is a leaf module (it imports nothing from starlab) because the trainer, below assessment, speaks it too.
"""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """An outcome; a ``str`` so that it is stored, compared and written to JSON as its plain value."""

    OK = "ok"
    COMPLETED = "completed"
    EARLY_STOPPED = "early_stopped"
    OUT_OF_TIME = "out_of_time"
    DIVERGED = "diverged"
    FAILED = "failed"

    __str__ = str.__str__  # f"{Status.OK}" is "ok" on every Python version

    @classmethod
    def parse(cls, value: str) -> Status:
        """The status named ``value``; a one-line error listing the allowed values otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"status {value!r} is not one of {', '.join(s.value for s in cls)}") from None
