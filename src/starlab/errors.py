"""Errors that name a setting without knowing who set it.

The library is used from Python and from the command line. A message such as "give one with data=PATH" is
right for ``assess(..., data=PATH)`` and wrong for ``starlab lm``, where the same setting is ``--data PATH``.
A :class:`SettingError` keeps its template and the :class:`Setting` names in it, so the library renders the
Python name and the CLI renders its own flag, from one message written once.
"""

from __future__ import annotations

from collections.abc import Callable

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
