"""STAR's evolution: the genome problem, variation operators, algorithms, executors and the durable loop."""

from starlab.evolve.algorithms import ALGORITHMS, make_algorithm
from starlab.evolve.config import SearchConfig
from starlab.evolve.executors import EXECUTORS, EvalJob, make_executor
from starlab.evolve.problem import GenomeProblem
from starlab.evolve.run import Hooks, SearchInterrupted, run_search
from starlab.evolve.search import Search, SearchSummary
from starlab.evolve.search_presets import SEARCH_PRESETS

__all__ = [
    "ALGORITHMS",
    "EXECUTORS",
    "SEARCH_PRESETS",
    "EvalJob",
    "GenomeProblem",
    "Hooks",
    "Search",
    "SearchConfig",
    "SearchInterrupted",
    "SearchSummary",
    "make_algorithm",
    "make_executor",
    "run_search",
]
