"""Copy the starlab modules a Hugging Face export needs into it, so it loads where starlab is not installed.

``transformers`` loads remote code from one directory and follows only imports written ``from .name import
...``. So every starlab module reachable from :mod:`starlab.hf.modeling` is copied flat, as
``starlab_<package>_<module>.py``, with each ``from starlab... import`` statement rewritten to import from its
copy; names a package re-exports are traced to the module that defines them. The copies are starlab's source
otherwise unchanged (comments and all), so the exported code is the code that was tested.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent  # the starlab package
ROOT, ROOT_FILE = "starlab.hf.modeling", "modeling_starlab.py"


@dataclass(frozen=True)
class Target:
    """Where an imported name lives: ``module`` itself (``name`` None) or ``name`` defined in ``module``."""

    module: str
    name: str | None


def source_path(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = SOURCE / relative / "__init__.py"
    return package if package.is_file() else (SOURCE / relative).with_suffix(".py")


def is_package(module: str) -> bool:
    return source_path(module).name == "__init__.py"


def resolve(module: str, name: str) -> Target:
    """The module that defines ``name`` imported from ``module``, following a package's re-exports."""
    if module != "starlab" and source_path(f"{module}.{name}").is_file():
        return Target(f"{module}.{name}", None)
    if not is_package(module):
        return Target(module, name)
    for node in ast.parse(source_path(module).read_text()).body:
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            return resolve(node.module, original)
    raise ValueError(f"cannot vendor {module}.{name}: {module} neither defines nor imports it")


def flat_name(module: str) -> str:
    return ROOT_FILE[:-3] if module == ROOT else module.replace(".", "_")


def starlab_imports(tree: ast.Module) -> list[ast.ImportFrom]:
    """Every ``from starlab... import`` in the module, at any depth (lazy imports inside functions too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "starlab" for a in node.names):
            raise ValueError("starlab modules import with `from starlab... import`, not `import starlab...`")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "starlab":
            found.append(node)
    return found


def rewrite(node: ast.ImportFrom, indent: str) -> tuple[str, set[str]]:
    """The statement importing the same names from the flat copies, and the modules it needs."""
    lines, needed = [], set()
    for alias in node.names:
        target = resolve(node.module, alias.name)
        needed.add(target.module)
        if target.name is None:
            lines.append(f"from . import {flat_name(target.module)} as {alias.asname or alias.name}")
        else:
            rename = f" as {alias.asname or alias.name}" if (alias.asname or alias.name) != target.name else ""
            lines.append(f"from .{flat_name(target.module)} import {target.name}{rename}")
    return f"\n{indent}".join(lines), needed


def vendored_source(module: str) -> tuple[str, set[str]]:
    """``module``'s source with its starlab imports rewritten, and the starlab modules it imports."""
    text = source_path(module).read_text()
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits, needed = [], set()
    for node in starlab_imports(ast.parse(text)):
        replacement, modules = rewrite(node, " " * node.col_offset)
        needed |= modules
        start = offsets[node.lineno - 1] + node.col_offset
        end = offsets[node.end_lineno - 1] + node.end_col_offset
        edits.append((start, end, replacement))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text, needed


def vendor(directory: Path) -> list[str]:
    """Write ``modeling_starlab.py`` and every starlab module it reaches into ``directory``; their file names."""
    sources, waiting = {}, [ROOT]
    while waiting:
        module = waiting.pop()
        if module not in sources:
            sources[module], needed = vendored_source(module)
            waiting.extend(needed)
    anchors = "".join(
        f"from .{flat_name(m)} import __name__ as _{flat_name(m)}  # noqa: F401\n" for m in sorted(sources) if m != ROOT
    )
    note = "\n# transformers copies the files it sees imported as `from .name import ...`: every copied module, once\n"
    sources[ROOT] += note + anchors
    for module, text in sources.items():
        (directory / f"{flat_name(module)}.py").write_text(text)
    return sorted(f"{flat_name(m)}.py" for m in sources)
