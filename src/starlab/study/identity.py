"""A study's identity is what it asks for, not everything a protocol happens to say about itself.

Stored study results are reused only under the same identity. Were a protocol's whole ``summary()`` part of it,
every setting later added to the protocol (with a default that keeps the old behaviour) would change the identity
and orphan results measured exactly as before. So a protocol enters a study's identity as its name and the
settings it *sets*: those that have no default, or differ from it. A new defaulted setting is absent until some
protocol sets it; changing a registered protocol's real settings (``lm-small``'s steps) still changes it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlab.assess import Protocol

#: what names or prices a protocol rather than defines what it measures
NOT_ASKED = ("name", "description", "cost_s")


def protocol_identity(protocol: Protocol) -> dict[str, Any]:
    """``{"protocol": name, "settings": {setting: value}}`` with only the settings that have no default or differ
    from it (nested dataclasses such as the LIV config: only their differing fields), as plain JSON data."""
    return {"protocol": protocol.name, "settings": _asked(protocol, skip=NOT_ASKED)}


def _asked(instance: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    asked = {}
    for item in dataclasses.fields(instance):
        if item.name in skip:
            continue
        value, default = getattr(instance, item.name), _default(item)
        if default is dataclasses.MISSING or value != default:
            if dataclasses.is_dataclass(value) and dataclasses.is_dataclass(default):
                asked[item.name] = _asked(value)
            else:
                asked[item.name] = _plain(value)
    return asked


def _default(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


def _plain(value: Any) -> Any:
    """JSON's form of a setting: tuples as lists, dataclasses as dicts (what a stored file reads back as)."""
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
