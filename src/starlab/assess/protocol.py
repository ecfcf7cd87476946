"""What a protocol is, and the registry of the named ones.

A protocol fixes how one genome's *quality* is measured (lower is better): the tasks, the model width, the
training budgets and how task scores become one number. Protocols are frozen dataclasses, so a variant is
``protocol.with_settings(steps=100)`` and a search stores only a name and its settings.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from starlab.errors import Setting, SettingError
from starlab.genome import Genome
from starlab.liv import LIVConfig
from starlab.status import Status

#: Told, as one line of text, what an assessment is training now (the CLI shows it beside a spinner).
Progress = Callable[[str], None]

KINDS = ("mad", "lm", "algorithmic", "synthetic")


def step_reporter(progress: Progress | None, stage: str, steps: int, every: int = 10):
    """The trainer's ``on_step`` callback that tells ``progress`` the step and loss every ``every`` steps."""
    if progress is None:
        return None

    def on_step(step: int, loss: float) -> None:
        if step % every == 0 or step == steps:
            progress(f"{stage}: step {step}/{steps}, loss {loss:.4f}")

    return on_step


@dataclass(frozen=True)
class Outcome:
    """What a protocol measures: quality (lower is better), per-task scores (higher is better) and details."""

    quality: float
    scores: dict[str, float]
    status: Status = Status.OK
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True, eq=False)
class Protocol(ABC):
    """A way to measure quality. Every protocol also has a ``width`` (the model width it trains at).

    Attributes:
        name: the registry key (``quick``, ``lm-quick``, ``algo-parentheses``...).
        description: one line for ``starlab protocols``.
        config: how the LIVs are built (head sizes, state expansion...).
        cost_s: measured seconds per 4-slot genome on 2 CPU cores (``bench/protocols.py``); ``None`` where a
            protocol is GPU scale or a variant nobody measured.
    """

    kind: ClassVar[str]
    quality_meaning: ClassVar[str]  # what the number is, in words, for summaries and reports (lower is better)
    name: str
    description: str
    config: LIVConfig = field(default_factory=LIVConfig)
    cost_s: float | None = None

    @property
    def worst_quality(self) -> float:
        """The quality of a model that learned nothing: diverged and failed evaluations get it, and it is the
        hypervolume reference point's quality coordinate."""
        return 1.0

    @property
    def vocab_bound(self) -> int:
        """The largest vocabulary a model of this protocol has: an upper bound for memory checks before a
        search starts (the synthetic and algorithmic tasks here stay below it)."""
        return 512

    @abstractmethod
    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None
    ) -> Outcome:
        """Train and evaluate; never raise for a model that merely diverges (return status ``diverged``)."""

    @abstractmethod
    def training(self) -> dict[str, Any]:
        """What one assessment trains (tasks, steps, batch...), as plain data for ``starlab protocols``."""

    def with_data(self, data: str | None) -> Protocol:
        """This protocol on a user corpus; only language-modelling protocols read one."""
        if data is not None:
            raise SettingError(
                "protocol {0!r} generates its own data; {1} applies to language-modelling protocols only",
                self.name,
                Setting("data"),
            )
        return self

    def with_settings(self, **settings: Any) -> Protocol:
        """A variant with some settings replaced (its measured cost no longer applies)."""
        allowed = sorted(f.name for f in dataclasses.fields(self) if f.name not in ("name", "description", "cost_s"))
        for key in settings:
            if key not in allowed:
                raise SettingError(
                    "protocol {0!r} has no setting {1!r}; settings: {2}", self.name, key, ", ".join(allowed)
                )
        return dataclasses.replace(self, **settings, cost_s=None) if settings else self

    def summary(self) -> dict[str, Any]:
        """Name, kind, what quality means, description, width, what it trains, and its measured cost."""
        return {
            "name": self.name,
            "kind": self.kind,
            "quality": self.quality_meaning,
            "description": self.description,
            "width": self.width,  # type: ignore[attr-defined]
            "training": self.training(),
            "cost_s": self.cost_s,
        }


PROTOCOLS: dict[str, Protocol] = {}


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` under its name; a name is registered once (``unregister_protocol`` frees it)."""
    if protocol.kind not in KINDS:
        raise ValueError(f"protocol kind {protocol.kind!r} is not one of {', '.join(KINDS)}")
    if PROTOCOLS.get(protocol.name, protocol) is not protocol:
        raise ValueError(f"a protocol named {protocol.name!r} is already registered")
    PROTOCOLS[protocol.name] = protocol
    return protocol


def unregister_protocol(name: str) -> None:
    PROTOCOLS.pop(name, None)


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; protocols: {', '.join(protocol_names())}")
    return PROTOCOLS[name]


def protocol_names(kind: str | None = None) -> list[str]:
    """Registered protocol names, of one ``kind`` or all, grouped by kind (MAD first), each in registration order."""
    names = [name for name, p in PROTOCOLS.items() if kind is None or p.kind == kind]
    return sorted(names, key=lambda name: KINDS.index(PROTOCOLS[name].kind))
