"""Checks of a backbone's settings: each bad value is one line that names the setting and what it allows.

The same rules serve ``Backbone(...)`` (Python values) and ``starlab.load`` (values read from
``config.json``), so a model that can be built can be saved, and one that is saved can be loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any, NamedTuple

from starlab.errors import show
from starlab.genome import Genome
from starlab.liv import LIVConfig
from starlab.liv.config import MLPS

#: the largest value of an integer LIV setting (they are sizes and lengths; torch shapes beyond int32 are
#: a typo, never a model)
INT_LIMIT = 2**31 - 1


class Rule(NamedTuple):
    """What one :class:`~starlab.liv.LIVConfig` field allows: its type and range, or its choices."""

    kind: type  # int or float (the field's dataclass type); others are checked by type only
    low: Any = None  # None: no lower bound (integers: -INT_LIMIT); a choice rule: its first choice
    high: float | None = None  # None: no upper bound (integers: INT_LIMIT)
    open_low: bool = False  # the lower bound itself is not allowed
    optional: bool = False  # None is allowed too
    choices: tuple = ()  # the only values allowed (when not empty)

    @classmethod
    def one_of(cls, *choices: Any) -> Rule:
        return cls(type(choices[0]), low=choices[0], choices=choices)

    def allowed(self) -> str:
        return f"{self._allowed()} or null" if self.optional else self._allowed()

    def _allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(show(choice) for choice in self.choices)
        if self.kind is int:
            low = -INT_LIMIT if self.low is None else int(self.low)
            return f"an integer in {low}..{INT_LIMIT if self.high is None else int(self.high)}"
        if self.kind is float:
            if self.low is None and self.high is None:
                return "a finite number"
            if self.high is None:
                return f"a finite number {'>' if self.open_low else '>='} {self.low:g}"
            return f"a number in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        return f"a {self.kind.__name__}"

    def check(self, value: Any, json_style: bool = False) -> Any:
        """The value, normalised (an integer given for a float field becomes a float); ValueError if not allowed."""
        ok = True
        if value is None and self.optional:
            return value
        if self.choices:
            ok = isinstance(value, self.kind) and value in self.choices
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            low, high = -INT_LIMIT if self.low is None else self.low, INT_LIMIT if self.high is None else self.high
            ok = ok and low <= value <= high
        elif self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                try:
                    value = float(value)
                except OverflowError:  # an integer beyond any float
                    ok = False
            ok = ok and math.isfinite(value)
            if ok and self.low is not None:
                ok = value > self.low if self.open_low else value >= self.low
            if ok and self.high is not None:
                ok = value <= self.high
        else:
            ok = isinstance(value, self.kind)
        if not ok:
            raise ValueError(f"must be {self.allowed()}, got {show(value, json_style)}")
        return value


#: the range of each LIVConfig field. Sizes are at least 1, head sizes at least 2 (RoPE rotates channel pairs:
#: no width splits into even 1-channel heads). The float bounds keep float32 arithmetic finite and the sizes
#: they scale representable: a RoPE base below 1 turns frequencies into overflows, a SwiGLU over 1024 times
#: the width or a lambda beyond ±1000 is a typo. A field missing here is checked by its type alone. A fixed
#: head count must also split the width (checked when the attention layer is built: it depends on the width).
LIV_CONFIG_RULES: dict[str, Rule] = {
    "head_dim": Rule(int, 2),
    "rope_base": Rule(float, 1, 1e30),
    "recurrence_head_dim": Rule(int, 2),
    "scan_chunk": Rule(int, 1),
    "mlp_ratio": Rule(float, 0, 1024, open_low=True),
    "mlp_multiple": Rule(int, 1),
    "filter_hidden": Rule(int, 1),
    "filter_bands": Rule(int, 1),
    "filter_reference_length": Rule(int, 1),
    "diff_lambda_init": Rule(float, -1000, 1000),
    "bias": Rule.one_of(False, True),
    "rope": Rule.one_of(True, False),
    "heads": Rule(int, 1, optional=True),
    "mlp": Rule.one_of(*MLPS),
}


@functools.cache
def liv_config_rules() -> dict[str, Rule]:
    """Every LIVConfig field and its rule (fields without an entry above: their dataclass type, any value)."""
    hints = typing.get_type_hints(LIVConfig)
    return {f.name: LIV_CONFIG_RULES.get(f.name, Rule(hints[f.name])) for f in dataclasses.fields(LIVConfig)}


def check_liv_config(config: Any) -> LIVConfig:
    """``config`` (a :class:`LIVConfig`) with every field checked; integers given for float fields become floats."""
    if not isinstance(config, LIVConfig):
        raise ValueError(f"config must be a LIVConfig, got {type(config).__name__}")
    changes = {}
    for name, rule in liv_config_rules().items():
        value = getattr(config, name)
        try:
            checked = rule.check(value)
        except ValueError as error:
            raise ValueError(f"config.{name} {error}") from None
        if type(checked) is not type(value):
            changes[name] = checked
    return dataclasses.replace(config, **changes) if changes else config


def check_genome(genome: Any) -> Genome:
    """A valid genome, canonical (relabelled group ids and no-op sharing build the same model)."""
    if not isinstance(genome, Genome):
        raise ValueError(f"genome must be a Genome (e.g. Genome.parse('11111-91111')), got {type(genome).__name__}")
    return genome.validate().canonical()


def check_vocab_size(vocab_size: Any) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {show(vocab_size)}")
    return vocab_size


def check_tie_embeddings(tie_embeddings: Any) -> bool:
    if not isinstance(tie_embeddings, bool):
        raise ValueError(f"tie_embeddings must be True or False, got {show(tie_embeddings)}")
    return tie_embeddings


def check_max_positions(max_positions: Any) -> int | None:
    if max_positions is None:
        return None
    if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 1:
        raise ValueError(f"max_positions must be None or a positive integer, got {show(max_positions)}")
    return max_positions
