"""The repository says what is true of itself: the protocols, modules and files its text names exist, every
package its source imports is declared, and a helper is written once (issue 31 item 6)."""

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import starlab
from starlab.assess import get_protocol
from starlab.liv import ops

SOURCE = Path(starlab.__file__).parent
ROOT = SOURCE.parent.parent
TEXT = [*SOURCE.rglob("*.py"), *(ROOT / "docs").glob("*.md"), ROOT / "README.md", *(ROOT / "bench").glob("*.py")]
#: the distribution that provides an import name, where the two differ
DISTRIBUTIONS = {"sklearn": "scikit-learn"}


def test_every_ladder_the_text_shows_names_protocols_that_exist():
    ladders = [
        (path.name, match) for path in TEXT for match in re.findall(r"--ladder ([a-z][\w,-]*)", path.read_text())
    ]
    ladders += [
        (p.name, m.replace(" → ", ",")) for p in TEXT for m in re.findall(r"``([\w-]+ → [\w-]+)``", p.read_text())
    ]
    assert len(ladders) >= 3
    for _where, ladder in ladders:
        for name in ladder.split(","):
            get_protocol(name)  # raises for a protocol that does not exist (lm-long did not)


def test_no_text_points_at_a_section_of_a_file_outside_the_repository():
    cited = [f"{path.relative_to(ROOT)}:{n}" for path in [*TEXT, *(ROOT / "tests").glob("*.py")]
             for n, line in enumerate(path.read_text().splitlines(), 1) if "SPEC " + "§" in line]  # fmt: skip
    assert cited == [], "SPEC is not in the repository: point at docs/ or say 'the project spec'"


def test_the_ops_docstring_names_functions_and_modules_that_exist():
    named = set(re.findall(r"``(\w+)``", ops.__doc__)) | set(re.findall(r"``starlab\.liv\.(\w+)``", ops.__doc__))
    missing = {name for name in named if not hasattr(ops, name) and not (SOURCE / "liv" / f"{name}.py").exists()}
    assert missing == set() and {"naive_attention", "sequential_scan", "direct_causal_conv"} <= named


def test_every_package_the_source_imports_is_declared():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    declared = {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}
    imported = set()
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "starlab"}
    assert {DISTRIBUTIONS.get(name, name) for name in third_party} - declared == set()


#: a body shorter than this (its ``ast.dump``) is too small to count as a helper: ``return None``, ``pass``
SMALL = 150
#: copies left on purpose: methods of one class family that read alike, and two one-line type checks
KNOWN_COPIES = {
    frozenset({"liv/base.py:name", "liv/differential.py:name"}),
    frozenset({"liv/convolution.py:own_step", "liv/memoryless.py:own_step"}),
    frozenset({"liv/convolution.py:cached_cache_values", "liv/convolution.py:own_cache_values"}),
    frozenset({"train/checkpoint.py:_is_int", "store/sqlite.py:_is_int"}),
}


def delegates(function: ast.FunctionDef) -> bool:
    """Whether the body (docstring aside) only returns a call: a method that hands over to the one helper."""
    body = function.body[1:] if ast.get_docstring(function) else function.body
    return len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Call)


def test_no_helper_is_written_twice():
    """Functions whose bodies (docstrings aside) are the same code: one of them should import the other."""
    bodies = defaultdict(set)
    for path in SOURCE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = ast.dump(
                    ast.Module(body=node.body[1:] if ast.get_docstring(node) else node.body, type_ignores=[])
                )
                if len(body) > SMALL and not delegates(node):
                    bodies[body].add(f"{path.relative_to(SOURCE)}:{node.name}")
    copies = {frozenset(names) for names in bodies.values() if len(names) > 1}
    assert {copy for copy in copies if copy not in KNOWN_COPIES} == set()
