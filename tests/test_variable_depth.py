"""Variable depth (``--depth MIN:MAX``): the encoding, insertion/deletion mutation, crossover of genomes of
different lengths, exact sizes at every depth, and searches that resume; a fixed depth searches as before."""

import dataclasses
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from pymoo.core.population import Population

from starlab.assess import CACHE_LENGTH, SyntheticProtocol, genome_sizes, register_protocol, unregister_protocol
from starlab.evolve import Search, SearchConfig, make_executor
from starlab.evolve.operators import CanonicalDuplicates, GeneMutation, GenomeSampling, TwoPointCrossover
from starlab.evolve.problem import EMPTY, GenomeProblem
from starlab.genome import Genome, gene_ranges, preset, random_genome
from starlab.liv import LIVConfig, get_class
from starlab.model import Backbone, measured_cache_bytes, size_report
from starlab.store import RunStore, check_stored_config

SA1, GCONV2 = get_class("SA-1").id, get_class("GConv-2").id


def check_vectors(problem: GenomeProblem, X: np.ndarray) -> list[Genome]:
    """Every row is a repaired vector of a valid genome within the depth range: occupied slots first, a fixed
    point of encode(decode(.)), group ids within the genome's length. Returns the genomes."""
    genomes = []
    for x in X:
        genome = problem.decode(x)
        assert problem.min_depth <= len(genome) <= problem.depth
        assert (problem.encode(genome) == x).all()  # packed, renumbered, repaired: nothing left to repair
        occupied = x[problem.class_columns()] != EMPTY
        assert occupied[: len(genome)].all() and not occupied[len(genome) :].any()
        strict = Genome.from_slots([list(s) for s in genome.slots], backbone=genome.backbone)  # raises if invalid
        assert strict == genome and all(1 <= s.featurizer_group <= len(genome) >= s.feature_group for s in genome.slots)
        genomes.append(genome)
    return genomes


def offspring(problem: GenomeProblem, X: np.ndarray, seed: int, mutation: GeneMutation) -> tuple[np.ndarray, ...]:
    """Children of consecutive pairs of ``X`` by crossover, and those children mutated."""
    rng = np.random.default_rng(seed)
    pairs = np.arange(len(X) // 2 * 2).reshape(-1, 2)
    children = TwoPointCrossover(prob=1.0).do(problem, Population.new("X", X), pairs, random_state=rng).get("X")
    mutants = mutation.do(problem, Population.new("X", children), random_state=rng).get("X")
    return children, mutants


# ---- encoding ---------------------------------------------------------------------------------------------


def test_a_fixed_depth_is_the_vector_of_five_integers_per_slot_it_always_was():
    problem = GenomeProblem(4)
    ranges = np.array(gene_ranges(4) * 4)
    assert problem.n_var == 20 and not problem.variable
    assert (problem.xl == ranges[:, 0]).all() and (problem.xu == ranges[:, 1]).all()
    genome = random_genome(4, 3)
    assert problem.encode(genome).tolist() == [gene for slot in genome.slots for gene in slot]
    drawn = GenomeSampling().do(problem, 5, random_state=np.random.default_rng(9)).get("X")
    reference = np.random.default_rng(9)  # random_genome's draws, one genome after the other
    assert [problem.decode(x) for x in drawn] == [random_genome(4, reference) for _ in range(5)]


def test_a_range_keeps_room_for_the_deepest_genome_and_only_optional_slots_can_be_empty():
    problem = GenomeProblem(5, min_depth=2)
    assert problem.n_var == 25 and problem.variable and problem.depth_text() == "2:5"
    assert problem.xl[problem.class_columns()].tolist() == [1, 1, EMPTY, EMPTY, EMPTY]
    genome = Genome.parse("11111-91111-51111")
    vector = problem.encode(genome)
    assert vector.tolist() == [*(g for s in genome.slots for g in s), EMPTY, 1, 1, 1, 1, EMPTY, 1, 1, 1, 1]
    assert problem.decode(vector) == genome
    vector[: problem.layout.size] = EMPTY  # the first slot cannot be empty: clipped back to a class
    assert len(problem.decode(vector)) == 3
    with pytest.raises(ValueError, match="has 1 slots; this search uses depth 2:5"):
        problem.encode(Genome.parse("11111"))
    with pytest.raises(ValueError, match="has 6 slots; this search uses depth 2:5"):
        problem.encode(preset("transformer++", 6))


def test_decoding_drops_empty_slots_and_renumbers_groups_keeping_every_sharing():
    problem = GenomeProblem(4, min_depth=1)
    # SA-1 in slots 1 and 4 share featurizer group 4 and feature group 3; slots 2 and 3 are empty
    slots = [[SA1, 4, 2, 3, 2], [EMPTY, 1, 1, 1, 1], [EMPTY, 2, 2, 2, 2], [SA1, 4, 2, 3, 2]]
    genome = problem.decode(np.array([gene for slot in slots for gene in slot]))
    assert genome.text() == "11212-11212"  # ids renumbered to 1: a group of the two-slot genome
    assert genome.featurizer_leaders() == [0, 0] and genome.feature_sources() == [0, 0]
    assert genome.hash() == Genome.parse("12222-12222").hash() != Genome.parse("11111-11111").hash()


def test_duplicates_are_the_same_architecture_whatever_the_vector():
    problem = GenomeProblem(4, min_depth=2)
    genome = Genome.parse("11111-91111-51111")
    moved = problem.encode(genome).reshape(4, 5)[[0, 1, 3, 2]].ravel()  # an empty slot before the last
    pop = Population.new("X", np.array([problem.encode(genome), moved, problem.encode(Genome.parse("11111-91111"))]))
    _, _, duplicates = CanonicalDuplicates(problem).do(pop, return_indices=True)
    assert duplicates == [1]


# ---- operators --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("at_slots", [True, False])
def test_every_sampled_crossed_and_mutated_genome_is_valid_and_within_the_range(at_slots):
    problem = GenomeProblem(6, min_depth=2)
    depths = Counter()
    for seed in range(12):
        X = GenomeSampling().do(problem, 20, random_state=np.random.default_rng(seed)).get("X")
        X[:, 2 : problem.slot_genes : 5] = 2  # every slot asks for featurizer sharing: mostly incompatible
        rng = np.random.default_rng(seed)
        pairs = np.arange(20).reshape(10, 2)
        children = TwoPointCrossover(at_slots, prob=1.0).do(problem, Population.new("X", X), pairs, random_state=rng)
        mutants = GeneMutation(0.3).do(problem, Population.new("X", children.get("X")), random_state=rng)
        for vectors in (children.get("X"), mutants.get("X")):
            depths.update(len(genome) for genome in check_vectors(problem, vectors))
    assert set(depths) == {2, 3, 4, 5, 6}


def test_sampling_draws_depths_across_the_range_and_keeps_seeds_of_any_depth_in_it():
    problem = GenomeProblem(5, min_depth=2)
    seeds = [Genome.parse("11111-91111"), preset("striped-mamba", 4)]
    X = GenomeSampling(seeds).do(problem, 60, random_state=np.random.default_rng(0)).get("X")
    genomes = check_vectors(problem, X)
    assert genomes[:2] == seeds and len({g.hash() for g in genomes}) == 60
    assert set(Counter(len(g) for g in genomes[2:])) == {2, 3, 4, 5}


def classes(genome: Genome) -> list[int]:
    return [slot.cls for slot in genome.slots]


def test_insertion_adds_one_random_slot_anywhere_and_deletion_removes_one_within_the_range():
    problem = GenomeProblem(5, min_depth=2)
    X = GenomeSampling().do(problem, 40, random_state=np.random.default_rng(1)).get("X")
    parents = [problem.decode(x) for x in X]
    for insert, delete, change in ((1.0, 0.0, 1), (0.0, 1.0, -1)):
        mutation = GeneMutation(gene_prob=0.0, insert_prob=insert, delete_prob=delete)
        children = check_vectors(problem, mutation.do(problem, Population.new("X", X.copy()),
                                                      random_state=np.random.default_rng(2)).get("X"))  # fmt: skip
        positions = Counter()
        for parent, child in zip(parents, children, strict=True):
            bound = problem.depth if change > 0 else problem.min_depth
            if len(parent) == bound:  # at the bound nothing is inserted or deleted
                assert child == parent
                continue
            assert len(child) == len(parent) + change
            longer, shorter = (classes(child), classes(parent)) if change > 0 else (classes(parent), classes(child))
            position = next((i for i in range(len(shorter)) if longer[i] != shorter[i]), len(shorter))
            assert longer[:position] + longer[position + 1 :] == shorter  # one slot in or out, the others kept
            positions[position] += 1
        assert len(positions) >= 3  # anywhere, not only at the end


def test_insertions_and_deletions_happen_at_their_documented_rates():
    problem = GenomeProblem(8, min_depth=2)
    X = np.array([problem.encode(random_genome(5, seed)) for seed in range(400)])  # depth 5: both are possible
    mutants = GeneMutation(gene_prob=0.0).do(
        problem, Population.new("X", X.copy()), random_state=np.random.default_rng(0)
    )
    change = Counter((problem.depths(mutants.get("X")) - 5).tolist())
    assert set(change) == {-1, 0, 1}
    assert 0.06 < change[1] / 400 < 0.14 and 0.06 < change[-1] / 400 < 0.14  # 0.1 each (INSERT_PROB, DELETE_PROB)


def recombinations(first: Genome, second: Genome, depth: int) -> set[tuple[str, str]]:
    """Every pair of children two-point crossover aligned by slot index can make: slots ``start..end-1``
    exchanged, empty slots dropped."""
    padded = [[*genome.slots, *[None] * (depth - len(genome))] for genome in (first, second)]

    def child(outside: list, inside: list, start: int, end: int) -> str:
        slots = [inside[i] if start <= i < end else outside[i] for i in range(depth)]
        return Genome.from_slots([s for s in slots if s is not None]).text()

    return {(child(*padded, start, end), child(*padded[::-1], start, end))
            for start in range(1, depth) for end in range(start + 1, depth + 1)}  # fmt: skip


def test_parents_of_different_depths_cross_into_valid_children_aligned_by_slot_index():
    problem = GenomeProblem(6, min_depth=2)
    short, long = Genome.parse("11111-91111"), Genome.parse("51111-61111-71111-81111-21111-31111")
    X = np.array([problem.encode(short), problem.encode(long)] * 30)
    children = TwoPointCrossover(prob=1.0).do(problem, Population.new("X", X), np.arange(60).reshape(30, 2),
                                              random_state=np.random.default_rng(4)).get("X")  # fmt: skip
    genomes = check_vectors(problem, children)
    pairs = {(genomes[k].text(), genomes[k + 30].text()) for k in range(30)}  # pymoo: all first children first
    assert pairs <= recombinations(short, long, 6) and len(pairs) >= 8
    assert set(Counter(len(g) for g in genomes)) >= {3, 4, 5}  # depths other than the parents'


# ---- sizes ------------------------------------------------------------------------------------------------


def unique_non_embedding_params(model: Backbone) -> int:
    embedding = {id(p) for p in model.embedding_parameters()}
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if id(p) not in embedding}.values())


@pytest.mark.parametrize("depth", [2, 3, 5])
def test_sizes_objectives_are_exact_at_every_depth(depth):
    """Params and cache as the search computes them are those of the model built from the decoded genome."""
    torch.manual_seed(0)
    problem, width, seq_len = GenomeProblem(5, min_depth=2), 32, 12
    X = np.array([x for x in GenomeSampling().do(problem, 60, random_state=np.random.default_rng(depth)).get("X")
                  if problem.depths(x) == depth][:3])  # fmt: skip
    for genome in (problem.decode(x) for x in X):
        model = Backbone(genome, width, vocab_size=2, config=LIVConfig())
        assert genome_sizes(genome, width, LIVConfig()).params == unique_non_embedding_params(model)
        assert size_report(genome, width, 2, seq_len, LIVConfig()).cache_bytes == measured_cache_bytes(model, seq_len)
        with torch.device("meta"):
            meta = Backbone(genome, width, vocab_size=2, config=LIVConfig())
        assert genome_sizes(genome, width, LIVConfig()).cache_bytes == meta.cache_bytes(CACHE_LENGTH)
    assert len(X) == 3


# ---- the config -------------------------------------------------------------------------------------------


def test_the_config_takes_a_range_as_text_and_round_trips_it_through_json_and_the_store(tmp_path):
    config = SearchConfig(protocol="synthetic", depth="2:4", population=4, generations=0)
    assert (config.depth, config.min_depth, config.depth_range, config.depth_text()) == (4, 2, (2, 4), "2:4")
    assert SearchConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert SearchConfig(protocol="synthetic", depth="3").min_depth is None
    assert SearchConfig(protocol="synthetic", depth="3:3") == SearchConfig(protocol="synthetic", depth=3)
    search = Search(tmp_path / "run", make_executor("local"), config)
    search.close()
    with RunStore(tmp_path / "run") as store:
        stored = store.get_meta("config")
    assert check_stored_config(stored, tmp_path / "run") == stored and stored["min_depth"] == 2
    resumed = Search(tmp_path / "run", make_executor("local"), resume=True)
    assert resumed.config == config and resumed.problem.depth_text() == "2:4"
    assert resumed.config.conflicts(depth="4") == {"depth": ("4", "2:4")}
    assert resumed.config.conflicts(depth="2:4") == {}
    resumed.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"depth": "4:2"}, "depth = 4:2 must have MIN <= MAX"),
        ({"depth": "0:3"}, "min_depth = 0 must be null or in 1..depth"),
        ({"depth": "2:300"}, "depth = 300 must be an integer in 1..256"),
        ({"depth": "a:b"}, "depth = 'a:b' must be an integer in 1..256 or MIN:MAX"),
        ({"depth": "1:2:3"}, "depth = '1:2:3' must be an integer in 1..256 or MIN:MAX"),
        ({"depth": 4, "min_depth": 5}, "min_depth = 5 must be null or in 1..depth"),
        ({"depth": 4, "min_depth": "2"}, "min_depth = '2' must be int or null"),
        ({"depth": "2:4", "surrogate": True}, "surrogate reads a fixed number of slots"),
        ({"depth": "2:4", "seeds": ("11111",)}, "seed genome 11111 has 1 slots; this search uses depth 2:4"),
        ({"depth": "2:5", "seeds": ("mamba",)}, "mamba cannot be built at depth 5, the deepest of the range"),
        (
            {"depth": 2, "seeds": ('{"slots": [[[1,2,1,1,3],1,1,1,1], [9,1,1,1,1]]}',)},
            "cannot be searched: slot \\[1,2,1,1,3\\],1,1,1,1 has an operator genome for its class",
        ),
    ],
)
def test_bad_ranges_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        SearchConfig(protocol="synthetic", **settings).check()


def test_preset_seeds_of_a_range_are_built_at_its_deepest_and_genome_seeds_at_their_own_depth():
    config = SearchConfig(protocol="synthetic", depth="2:6", seeds=("transformer++", "11111-91111"))
    assert [len(g) for g in config.seed_genomes()] == [6, 2]


# ---- searches ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["nsga2", "ga", "firefly", "random"])
def test_every_algorithm_searches_genomes_of_every_depth_in_the_range(tmp_path, algorithm):
    config = SearchConfig(protocol="synthetic", depth="2:4", population=8, generations=4, algorithm=algorithm)
    search = Search(tmp_path / "run", make_executor("local"), config)
    search.run()
    search.close()
    with RunStore(tmp_path / "run") as store:
        evaluations = store.evaluations()
    genomes = [Genome.parse(e.genome) for e in evaluations]
    assert set(Counter(len(g) for g in genomes)) == {2, 3, 4}
    assert len({e.hash for e in evaluations}) == len(evaluations)
    for genome, evaluation in zip(genomes, evaluations, strict=True):  # the sizes stored are the genome's
        sizes = genome_sizes(genome, evaluation.width, LIVConfig())
        assert (evaluation.params, evaluation.cache_bytes) == (sizes.params, sizes.cache_bytes)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class InterruptedAfter(SyntheticProtocol):
    """The synthetic protocol, journaled; Ctrl-C comes instead of any assessment after the first ``after``
    the journal holds (0: never)."""

    name: str = "synthetic-vd"
    after: int = 0

    def run(self, genome, *args, **kwargs):
        if 0 < self.after <= sum(journal_starts(Path(self.journal)).values()):
            raise KeyboardInterrupt
        return super().run(genome, *args, **kwargs)


def journal_starts(path: Path) -> Counter:
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split()[2] for line in lines if line.split()[1] == "start")


def evolve_with(protocol: InterruptedAfter, *argv: str) -> int:
    from starlab.cli import main

    register_protocol(protocol)
    try:
        return main(["evolve", *argv])
    finally:
        unregister_protocol(protocol.name)


def history(directory) -> tuple[list, list]:
    with RunStore(directory) as store:
        return [(e.genome, e.quality) for e in store.evaluations()], [
            (g.population, g.front) for g in store.generations()
        ]


@pytest.mark.parametrize("asynchronous", [False, True])
def test_starlab_evolve_with_a_depth_range_resumes_after_interruption_without_repeating_an_evaluation(
    tmp_path, capsys, asynchronous
):
    argv = ["--protocol", "synthetic-vd", "--depth", "2:4", "--population", "6", "--generations", "3", "--seed", "2",
            "--seeds", "transformer++,11111-91111", *(["--async"] if asynchronous else [])]  # fmt: skip
    whole, cut = (str(tmp_path / "whole.log"), str(tmp_path / "cut.log"))
    assert evolve_with(InterruptedAfter(cost_s=0.0, journal=whole), "--out", str(tmp_path / "whole"), *argv) == 0
    assert "search assessed 24 genomes of 2 to 4 slots at" in capsys.readouterr().out  # the result in words
    assert evolve_with(InterruptedAfter(cost_s=0.0, journal=cut, after=9), "--out", str(tmp_path / "cut"), *argv) == 130
    assert "interrupted; resume with `starlab evolve --resume" in capsys.readouterr().err
    assert len(history(tmp_path / "cut")[0]) == 9
    assert (
        evolve_with(InterruptedAfter(cost_s=0.0, journal=cut), "--resume", str(tmp_path / "cut"), "--depth", "2:4") == 0
    )
    assert "ignoring" not in capsys.readouterr().err
    evaluations = history(tmp_path / "cut")[0]
    starts = journal_starts(Path(cut))
    assert set(starts.values()) == {1} and len(starts) == len(evaluations) > 9  # none run twice
    assert history(tmp_path / "cut") == history(tmp_path / "whole")  # as if it had never stopped
    assert {len(Genome.parse(genome)) for genome, _ in evaluations} == {2, 3, 4}


def test_a_fixed_depth_search_makes_exactly_the_runs_it_made_before_variable_depth(tmp_path):
    """Digests of the evaluation order of small runs, recorded with the code before depth ranges existed."""
    recorded = {"nsga2": "e6766fe7d425f53a", "ga": "66727f51f04f369a", "firefly": "d4a1b2e09ccba364",
                "random": "85a6c54277515668"}  # fmt: skip
    for algorithm, digest in recorded.items():
        config = SearchConfig(protocol="synthetic", depth=3, population=6, generations=3, seed=11,
                              algorithm=algorithm, seeds=("11111-91111-11111",))  # fmt: skip
        search = Search(tmp_path / algorithm, make_executor("local"), config)
        search.run()
        search.close()
        with RunStore(tmp_path / algorithm) as store:
            order = ",".join(e.hash for e in store.evaluations())
        assert hashlib.sha256(order.encode()).hexdigest()[:16] == digest, algorithm


@pytest.mark.parametrize(
    ("depth", "extra", "message"),
    [
        ("4:2", (), "starlab: error: search setting depth = 4:2 must have MIN <= MAX"),
        ("2:4", ("--surrogate",), "starlab: error: --surrogate reads a fixed number of slots; it is not combined with"),
        ("1:2:3", (), "argument --depth: expected a positive integer or MIN:MAX, got '1:2:3'"),
        ("0:3", (), "argument --depth: expected a positive integer or MIN:MAX, got '0'"),
        ("2:", (), "argument --depth: expected a positive integer or MIN:MAX, got ''"),
    ],
)
def test_bad_depth_ranges_on_the_command_line_are_one_line_errors(tmp_path, capsys, depth, extra, message):
    from starlab.cli import main

    argv = ["evolve", "--out", str(tmp_path / "run"), "--protocol", "synthetic", "--depth", depth, *extra]
    try:
        code = main(argv)
    except SystemExit as stopped:  # argparse's own errors
        code = stopped.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and not (tmp_path / "run").exists()
