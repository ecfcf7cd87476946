"""The architecture holds: rooms (subpackages) import only rooms below them, and no module imports itself
back through others — counting imports inside functions, which a lazy import would otherwise hide."""

import ast
from pathlib import Path

import pytest

import starlab

SOURCE = Path(starlab.__file__).parent

#: Rooms from the top down (docs/architecture.md draws the same table); a room may import only lower ranks.
RANK = {
    "starlab": 9, "cli": 9,  # the entry points: ``starlab.load`` and the command line
    "console": 8, "report": 8, "export": 8,
    "evolve": 7, "study": 7,  # side by side: neither imports the other
    "store": 6,
    "assess": 5,
    "train": 4, "hf": 4,
    "tasks": 3, "model": 3,
    "genome": 2,
    "liv": 1,
    "status": 0, "errors": 0, "runtime": 0, "files": 0,  # leaves: the shared vocabulary and process settings
}  # fmt: skip


def module_names() -> dict[str, Path]:
    names = {}
    for path in SOURCE.rglob("*.py"):
        parts = ["starlab", *path.relative_to(SOURCE).with_suffix("").parts]
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the starlab modules it imports anywhere in its file (``from pkg import mod`` counts as mod)."""
    modules, graph = module_names(), {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: starlab imports absolutely"
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    targets.add(target if target in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "starlab"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on_stack.discard(w)
                component.append(w)
            on_stack.discard(v)
            if component:
                found.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_checker_sees_function_level_imports_and_cycles():
    graph = import_graph()
    assert "starlab.assess.assessment" in graph["starlab.assess"]  # via ``from starlab.assess.x import y``
    assert "starlab.model.serialization" in graph["starlab"]  # an import inside ``starlab.load``
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_anywhere():
    assert cycles(import_graph()) == []


def test_every_room_imports_only_rooms_below_it():
    graph = import_graph()
    assert {room(m) for m in graph} == set(RANK), "a new room needs its place in RANK and docs/architecture.md"
    upward = sorted(
        f"{m} -> {t}" for m, targets in graph.items() for t in targets
        if room(t) != room(m) and RANK[room(t)] >= RANK[room(m)]
    )  # fmt: skip
    assert upward == []


@pytest.mark.parametrize("lower", ["liv", "genome", "model", "tasks", "train", "assess", "store"])
def test_lower_rooms_never_reach_evolution_reporting_or_the_cli(lower):
    graph = import_graph()
    reached = {t for m in graph if room(m) == lower for t in graph[m]}
    assert not {room(t) for t in reached} & {"evolve", "report", "console", "cli"}


def test_only_the_cli_imports_the_study_room():
    """A study reads stored results and analyses them; the commands call it, nothing else depends on it."""
    graph = import_graph()
    importers = {room(m) for m, targets in graph.items() for t in targets if room(t) == "study" != room(m)}
    assert importers <= {"cli"}
