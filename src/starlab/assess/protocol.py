"""What a protocol is, and the registry of the named ones.

A protocol fixes how one genome's *quality* is measured (lower is better): the tasks, the model width, the
training budgets and how task scores become one number. Protocols are frozen dataclasses, so a variant is
``protocol.with_settings(steps=100)`` and a search stores only a name and its settings.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from starlab.errors import Setting, SettingError, show
from starlab.genome import Genome
from starlab.liv import LIVConfig, check_width
from starlab.status import Status
from starlab.train import Checkpointing

if typing.TYPE_CHECKING:
    from starlab.assess.record import Evaluation

#: Told, as one line of text, what an assessment is training now (the CLI shows it beside a spinner).
Progress = Callable[[str], None]

KINDS = ("mad", "lm", "algorithmic", "synthetic")
#: the largest integer setting (sizes, steps, lengths): beyond it is a typo, never a budget
INT_LIMIT = 2**31 - 1
#: seeds are stored in SQLite INTEGER columns and seed torch, numpy and pymoo
SEED_LIMIT = 2**63 - 1
#: how a protocol trains: ``auto`` is bf16 autocast where it pays (CUDA with bf16), fp32 elsewhere
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Range:
    """The numbers a setting allows (a closed interval unless ``open_low``); ``None``: unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def text(self, integer: bool = False) -> str:
        if integer and self.low is not None and self.high is not None and not self.open_low:
            return f"in {int(self.low)}..{int(self.high)}"
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.low is None:
            return f"<= {self.high:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"


POSITIVE, NON_NEGATIVE = Range(1, INT_LIMIT), Range(0, INT_LIMIT)
SEED = Range(0, SEED_LIMIT)


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
        precision: ``fp32``, ``bf16`` (autocast matmuls to bfloat16; weights and optimizer state stay fp32) or
            ``auto``: bf16 on a CUDA device that supports it, fp32 on CPUs (measured in ``bench/throughput.py``:
            on 2 AVX512-BF16 cores bf16 made whole evaluations slower, see docs/performance.md).
    """

    kind: ClassVar[str]
    quality_meaning: ClassVar[str]  # what the number is, in words, for summaries and reports (lower is better)
    #: the numbers each numeric setting allows (integer settings default to 0..INT_LIMIT)
    RANGES: ClassVar[dict[str, Range]] = {"cost_s": Range(0)}
    name: str
    description: str
    config: LIVConfig = field(default_factory=LIVConfig)
    cost_s: float | None = None
    precision: str = "auto"

    def __post_init__(self) -> None:
        """Every setting has its declared type and range: a variant made from text (``--protocol-setting``, a
        stored run) is refused in one line naming the setting, before anything is trained or stored."""
        ranges = {**_inherited_ranges(type(self))}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            hint = _field_types(type(self))[item.name]
            ok, normalised = _conform(value, hint)
            if not ok:
                self._refuse(item.name, _describe(hint), value)
            limits = ranges.get(item.name, NON_NEGATIVE if _base(hint) is int else None)
            number = isinstance(normalised, (int, float)) and not isinstance(normalised, bool)
            if limits is not None and number and normalised not in limits:
                integer = _base(hint) is int
                self._refuse(item.name, f"{'an integer' if integer else 'a number'} {limits.text(integer)}", value)
            if normalised is not value:
                object.__setattr__(self, item.name, normalised)
        if "width" in {f.name for f in dataclasses.fields(self)}:
            try:
                check_width(self.width)  # type: ignore[attr-defined]
            except ValueError:
                self._refuse("width", "a positive multiple of 8", self.width)  # type: ignore[attr-defined]
        if self.precision not in PRECISIONS:
            self._refuse("precision", f"one of {', '.join(PRECISIONS)}", self.precision)

    def uses_bf16(self, device: str | torch.device) -> bool:
        """Whether training on ``device`` autocasts to bfloat16: ``precision`` resolved for that device."""
        if self.precision != "auto":
            return self.precision == "bf16"
        device = torch.device(device)
        return device.type == "cuda" and torch.cuda.is_bf16_supported()

    def _refuse(self, setting: str, allowed: str, value: Any) -> typing.NoReturn:
        raise ValueError(f"protocol {self.name!r}: setting {setting} must be {allowed}, got {show(value)}")

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

    @property
    def preset_depth(self) -> int:
        """The slots a genome preset (``transformer++``...) is built with when assessed under this protocol and
        given no depth: MAD's 4, the depth ``cost_s`` is measured at."""
        return 4

    def describe(self, evaluation: Evaluation) -> dict[str, Any]:
        """One assessment's result as this protocol words it, as plain data (JSON-ready; ``starlab mad``,
        ``algo`` and ``lm`` print it): the evaluation record unless a protocol names its numbers itself."""
        return evaluation.to_dict()

    @abstractmethod
    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> Outcome:  # fmt: skip
        """Train and evaluate; never raise for a model that merely diverges (return status ``diverged``).

        ``checkpointing``: where a protocol that trains one model checkpoints it and resumes it from (the LM
        protocols); the others train many small models and ignore it."""

    def checkpointing(self, directory: Path) -> Checkpointing | None:
        """How a run of this protocol checkpoints into ``directory`` in a search (``None``: it does not; only
        protocols that train one model for long resume from checkpoints)."""
        return None

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

    def check_ready(self) -> None:
        """Raise a one-line ``ValueError`` now if every assessment would fail for a reason known before any
        genome is trained (language models: a corpus too small to split); a search calls it before it starts."""
        return None

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


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@functools.cache
def _inherited_ranges(cls: type) -> dict[str, Range]:
    ranges: dict[str, Range] = {}
    for base in reversed(cls.__mro__):
        ranges.update(base.__dict__.get("RANGES", {}))
    return ranges


def _arms(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _base(hint: Any) -> Any:
    """The hint without ``None`` (``int | None`` -> ``int``)."""
    arms = [arm for arm in _arms(hint) if arm is not type(None)]
    return arms[0] if len(arms) == 1 else hint


def _conform(value: Any, hint: Any) -> tuple[bool, Any]:
    """(whether ``value`` has the type ``hint`` names, the value normalised: lists become tuples, integers
    given for a float become floats)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            ok, normalised = _conform(value, arm)
            if ok:
                return True, normalised
        return False, value
    if hint is type(None):
        return value is None, value
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            return False, value
        arms = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(arms) != len(value):
            return False, value
        items = [_conform(item, arm) for item, arm in zip(value, arms, strict=True)]
        if not all(ok for ok, _ in items):
            return False, value
        normalised = tuple(item for _, item in items)
        return True, value if normalised == value and isinstance(value, tuple) else normalised
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            return False, value
        return math.isfinite(number), value if isinstance(value, float) else number
    if isinstance(hint, type):
        return isinstance(value, hint), value
    return True, value


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of ({_describe(args[0])})"
        return f"a list of {len(args)} ({', '.join(_describe(arm) for arm in args)})"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number", str: "text"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")


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
