"""Errors that name a setting without knowing who set it, and the two helpers every one-line message uses.

The library is used from Python and from the command line. A message such as "give one with data=PATH" is
right for ``assess(..., data=PATH)`` and wrong for ``starlab lm``, where the same setting is ``--data PATH``.
A :class:`SettingError` keeps its template and the :class:`Setting` names in it, so the library renders the
Python name and the CLI renders its own flag, from one message written once.

:func:`show` and :func:`one_line` keep such a message one short line whatever went into it: a hostile value (a
megabyte of text, an integer of a million digits, an object whose ``repr`` raises) and a library's multi-line
exception. They live in this leaf so that every room, from the model to the CLI, writes them the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

#: Renders a setting's name; ``before_value`` is True where a value follows (``data=`` / ``--data ``).
Namer = Callable[[str, bool], str]


class Setting(str):
    """The name of a setting, as an argument of a :class:`SettingError` template."""


def python_name(name: str, before_value: bool) -> str:
    return f"{name}=" if before_value else name


class _Rendered:
    def __init__(self, name: str, namer: Namer) -> None:
        self.name, self.namer = name, namer

    def __format__(self, spec: str) -> str:
        return self.namer(self.name, spec == "=")  # "{0:=}" marks a name that a value follows


class SettingError(ValueError):
    """A bad or missing setting. ``template`` is a ``str.format`` template over ``args``; the args that are
    :class:`Setting` render as names (``{0}``) or as names before a value (``{0:=}PATH``)."""

    def __init__(self, template: str, *args: object) -> None:
        self.template, self.values = template, args
        super().__init__(self.render(python_name))

    def render(self, namer: Namer) -> str:
        return self.template.format(*(_Rendered(a, namer) if isinstance(a, Setting) else a for a in self.values))


def show(value: Any, json_style: bool = False, limit: int = 60) -> str:
    """A short one-line rendering of a (possibly hostile) value for an error message, ASCII-escaped and cut
    at ``limit`` characters: ``repr`` for Python callers, JSON (what a user typed in config.json) with
    ``json_style``."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4000:
        return f"an integer of about {int(value.bit_length() * math.log10(2))} digits"  # repr would raise
    text = None
    if json_style:
        try:
            text = json.dumps(value, ensure_ascii=True)
        except (TypeError, ValueError, RecursionError):
            text = None
    if text is None:
        try:
            text = ascii(value)
        except (ValueError, RecursionError):  # an object whose repr itself fails
            text = f"a {type(value).__name__}"
    if len(text) > limit:
        text = f"{text[: limit - 20]}… ({len(text)} characters)"
    return text


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message as one line of at most ``limit`` characters (its type where it has none): its
    lines joined, because a library's first line is often only a heading ("Error(s) in loading state_dict")."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
    return text if len(text) <= limit else f"{text[:limit]}…"
