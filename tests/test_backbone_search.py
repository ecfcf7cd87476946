"""Backbone genes in the search (``--backbone-genes``): three more genes in the vector that sampling, crossover
and mutation act on, repaired to range; without the flag the vector and the backbone are what they were."""

import json
from collections import Counter

import numpy as np
import pytest
from pymoo.core.population import Population

from starlab.evolve import Search, SearchConfig, make_executor
from starlab.evolve.operators import CanonicalDuplicates, GeneMutation, GenomeSampling, TwoPointCrossover
from starlab.evolve.problem import GenomeProblem
from starlab.genome import BACKBONE_GENE_RANGES, BackboneGenes, Genome
from starlab.store import RunStore

ALL_BACKBONES = {
    (n, p, r) for n in range(1, 4) for p in range(1, 3) for r in range(1, 3)
}  # every combination of BACKBONE_GENE_RANGES


def test_without_the_flag_the_vector_has_no_backbone_genes_and_genomes_keep_the_default():
    problem = GenomeProblem(3)
    assert problem.n_var == 15
    X = GenomeSampling().do(problem, 20, random_state=np.random.default_rng(0)).get("X")
    assert all(problem.decode(x).backbone.is_default for x in X)
    with pytest.raises(ValueError, match="has backbone genes b212; this search keeps the default backbone"):
        problem.encode(Genome.parse("b212:11111-91111-11111"))
    with pytest.raises(ValueError, match="seed genome b212:11111-91111 has backbone genes b212; the search evolves "
                                         "them only with backbone_genes"):  # fmt: skip
        SearchConfig(protocol="synthetic", depth=2, seeds=("b212:11111-91111",)).check()


def test_with_the_flag_three_genes_follow_the_slots_and_round_trip():
    problem = GenomeProblem(3, backbone_genes=True)
    assert problem.n_var == 18 and problem.slot_genes == 15
    assert list(zip(problem.xl[15:], problem.xu[15:], strict=True)) == list(BACKBONE_GENE_RANGES)
    genome = Genome.parse("b212:11111-91111-11111")
    vector = problem.encode(genome)
    assert vector[15:].tolist() == [2, 1, 2] and problem.decode(vector) == genome
    assert problem.encode(Genome.parse("11111-91111-11111"))[15:].tolist() == [1, 1, 1]
    vector[15:] = [7, 0, 3]  # out of range: clipped to the nearest valid gene
    assert problem.decode(vector).backbone == BackboneGenes(3, 1, 2)


@pytest.mark.parametrize("min_depth", [3, 1])
def test_sampling_crossover_and_mutation_reach_every_backbone_and_keep_it_in_range(min_depth):
    problem = GenomeProblem(3, min_depth=min_depth, backbone_genes=True)
    sampled, crossed, mutated = Counter(), Counter(), Counter()
    for seed in range(6):
        rng = np.random.default_rng(seed)
        X = GenomeSampling().do(problem, 24, random_state=rng).get("X")
        children = TwoPointCrossover(prob=1.0).do(problem, Population.new("X", X), np.arange(24).reshape(12, 2),
                                                  random_state=rng).get("X")  # fmt: skip
        mutants = GeneMutation(0.3).do(problem, Population.new("X", children.copy()), random_state=rng).get("X")
        for counter, vectors in ((sampled, X), (crossed, children), (mutated, mutants)):
            for x in vectors:
                genome = problem.decode(x)
                assert (problem.encode(genome) == x).all() and min_depth <= len(genome) <= 3
                counter[tuple(genome.backbone)] += 1
    assert set(sampled) == set(crossed) == set(mutated) == ALL_BACKBONES


def test_crossover_exchanges_each_backbone_gene_with_probability_one_half():
    problem = GenomeProblem(2, backbone_genes=True)
    first, second = Genome.parse("b111:11111-91111"), Genome.parse("b322:51111-61111")
    X = np.array([problem.encode(first), problem.encode(second)] * 200)
    children = TwoPointCrossover(prob=1.0).do(problem, Population.new("X", X), np.arange(400).reshape(200, 2),
                                              random_state=np.random.default_rng(1)).get("X")  # fmt: skip
    firsts, seconds = children[:200, 10:], children[200:, 10:]  # pymoo puts all first children first
    assert ((firsts == [1, 1, 1]) | (firsts == [3, 2, 2])).all()  # each gene from one parent or the other
    assert (firsts + seconds == [4, 3, 3]).all()  # and the other child has the other parent's
    swapped = (firsts != [1, 1, 1]).mean(axis=0)
    assert ((0.4 < swapped) & (swapped < 0.6)).all()
    slots = {tuple(problem.decode(x).slots[0]) for x in children[:200]}
    assert len(slots) == 1  # two slots: the only cut point exchanges the second slot, never the first


def test_mutation_redraws_backbone_genes_and_leaves_them_alone_at_gene_probability_zero():
    problem = GenomeProblem(2, backbone_genes=True)
    X = np.array([problem.encode(Genome.parse("11111-91111"))] * 300)
    kept = GeneMutation(0.0).do(problem, Population.new("X", X.copy()), random_state=np.random.default_rng(0))
    assert (kept.get("X") == X).all()
    redrawn = GeneMutation(0.5).do(problem, Population.new("X", X.copy()), random_state=np.random.default_rng(0))
    assert {tuple(problem.decode(x).backbone) for x in redrawn.get("X")} == ALL_BACKBONES


def test_the_same_slots_on_another_backbone_are_another_architecture():
    problem = GenomeProblem(2, backbone_genes=True)
    genomes = ["11111-91111", "b211:11111-91111", "b111:11111-91111"]  # b111 is the default, written without
    pop = Population.new("X", np.array([problem.encode(Genome.parse(text)) for text in genomes]))
    _, _, duplicates = CanonicalDuplicates(problem).do(pop, return_indices=True)
    assert duplicates == [2]


def test_the_flag_round_trips_through_the_config_and_the_store(tmp_path):
    config = SearchConfig(protocol="synthetic", depth="2:3", backbone_genes=True, seeds=("b212:11111-91111",))
    assert SearchConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    search = Search(tmp_path / "run", make_executor("local"), config)
    search.close()
    with RunStore(tmp_path / "run") as store:
        assert store.get_meta("config")["backbone_genes"] is True
    resumed = Search(tmp_path / "run", make_executor("local"), resume=True)
    assert resumed.config == config and resumed.problem.n_var == 18
    resumed.close()


def test_a_search_with_backbone_genes_trains_the_backbones_it_breeds_and_sizes_them_exactly(tmp_path):
    """End to end on a protocol that trains (lm-tiny): every bred backbone builds and trains, and the stored
    sizes are those of the genome's own backbone: its slots on STAR's backbone plus the difference in norms."""
    from starlab.assess import genome_sizes, get_protocol
    from starlab.cli import main
    from starlab.model.blocks import norm_params

    settings = ["--protocol", "lm-tiny", "--depth", "2:4", "--backbone-genes", "--population", "6", "--generations",
                "1", "--seed", "1", "--keep-weights", "none", "--threads", "1"]  # fmt: skip
    assert main(["evolve", "--out", str(tmp_path / "run"), *settings]) == 0
    with RunStore(tmp_path / "run") as store:
        evaluations = store.evaluations()
    genomes = [Genome.parse(e.genome) for e in evaluations]
    assert len(evaluations) == 12 and all(e.status != "failed" for e in evaluations)
    assert len({g.backbone for g in genomes}) >= 4 and {len(g) for g in genomes} == {2, 3, 4}
    config = get_protocol("lm-tiny").config
    for genome, evaluation in zip(genomes, evaluations, strict=True):
        sizes, width = genome_sizes(genome, evaluation.width, config), evaluation.width
        assert (evaluation.params, evaluation.cache_bytes) == (sizes.params, sizes.cache_bytes)
        on_star = genome_sizes(Genome(genome.slots), width, config).params
        norms = norm_params(genome.backbone, len(genome), width) - norm_params(BackboneGenes(), len(genome), width)
        assert evaluation.params == on_star + norms
