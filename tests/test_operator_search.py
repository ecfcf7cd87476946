"""Searching with operator genes (``--operator-genes``): slots' classes as operator genomes ``[f,t,s,n,c]``, so
mutation and crossover act below the pool; repair keeps genomes valid; hashes and reports know the new classes."""

import json

import numpy as np
import pytest

from starlab.assess import register_protocol, unregister_protocol
from starlab.evolve import SearchConfig
from starlab.evolve.operators import GeneMutation, GenomeSampling
from starlab.evolve.problem import GenomeProblem
from starlab.genome import Genome
from starlab.liv import class_ids, class_key, get_class, valid_operator_genomes
from starlab.store import RunStore, check_stored_config, load_run
from test_variable_depth import InterruptedAfter, check_vectors, evolve_with, history, journal_starts, offspring

ALL_KEYS = {class_key(genes) for genes in valid_operator_genomes()}


def test_a_slot_is_nine_genes_with_the_operator_genome_first():
    problem = GenomeProblem(3, operator_genes=True)
    assert problem.n_var == 3 * 9
    genome = Genome.parse("[1,2,1,1,3],1,2,1,2-91111-[1,2,1,1,3],1,2,1,2")
    x = problem.encode(genome)
    assert x[:9].tolist() == [1, 2, 1, 1, 3, 1, 2, 1, 2] and x[9:14].tolist() == [9, 1, 1, 4, 2]  # GMemless
    assert problem.decode(x) == genome
    assert GenomeProblem(3).n_var == 15  # without the option: five genes a slot, as always


@pytest.mark.parametrize("min_depth", [None, 2])
def test_every_sampled_crossed_and_mutated_genome_is_valid_and_reaches_every_combination(min_depth):
    problem = GenomeProblem(6, min_depth=min_depth, operator_genes=True)
    X = GenomeSampling().do(problem, 60, random_state=np.random.default_rng(0)).get("X")
    seen = set()
    for seed in range(4):
        children, mutants = offspring(problem, X, seed, GeneMutation(gene_prob=0.3))
        for genome in check_vectors(problem, X) + check_vectors(problem, children) + check_vectors(problem, mutants):
            seen |= {slot.cls for slot in genome.slots}
        X = mutants
    assert seen == ALL_KEYS  # all 62: the 17 pool classes and the 45 others


def test_invalid_operator_genes_in_a_vector_are_repaired_keeping_the_featurizer():
    problem = GenomeProblem(2, operator_genes=True)
    x = np.array([5, 2, 1, 3, 2, 1, 1, 1, 1, 3, 2, 1, 1, 2, 1, 1, 1, 1])  # Rec-1 with t=2, n=3; SA-3 one head
    assert problem.decode(x).text() == "[5,4,1,1,2],1,1,1,1-[3,2,1,1,3],1,1,1,1"


def test_mutation_changes_classes_below_the_pool_level():
    problem = GenomeProblem(4, operator_genes=True)
    sa1 = problem.encode(Genome.parse("11111-91111-11111-91111"))
    X = np.repeat(sa1[None], 200, axis=0)
    mutants = GeneMutation()._do(problem, X, random_state=np.random.default_rng(1))
    classes = {slot.cls for x in mutants for slot in problem.decode(x).slots}
    assert (1, 2, 1, 1, 3) in classes  # softmax attention became linear attention by one gene
    assert any(isinstance(key, tuple) and key[0] == 9 for key in classes)  # the MLP's nonlinearity mutated


def test_seeds_may_hold_operator_genomes_only_when_the_search_has_operator_genes():
    seeds = "[1,2,1,1,3],1,1,1,1-91111;transformer++"
    config = SearchConfig(protocol="synthetic", depth=2, seeds=seeds, operator_genes=True)
    assert [g.text() for g in config.seed_genomes()] == ["[1,2,1,1,3],1,1,1,1-91111", "11111-91111"]
    with pytest.raises(ValueError, match=r"has an operator genome for its class.*--operator-genes"):
        SearchConfig(protocol="synthetic", depth=2, seeds=seeds).check()


def test_the_setting_round_trips_and_runs_stored_before_it_read_as_without_it(tmp_path):
    config = SearchConfig(protocol="synthetic", depth=2, population=4, generations=0, operator_genes=True)
    assert SearchConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    stored = json.loads(json.dumps(config.to_json()))  # as the store holds it
    for key in ("operator_genes", "backbone_genes", "min_depth"):  # a run stored before these settings existed
        del stored[key]
    assert check_stored_config(stored, tmp_path)["operator_genes"] is False


def test_starlab_evolve_with_operator_genes_finds_classes_outside_the_pool_and_resumes(tmp_path, capsys):
    argv = ["--protocol", "synthetic-vd", "--depth", "4", "--population", "6", "--generations", "3", "--seed", "3",
            "--operator-genes", "--objectives", "quality,params"]  # fmt: skip
    whole, cut = str(tmp_path / "whole.log"), str(tmp_path / "cut.log")
    assert evolve_with(InterruptedAfter(cost_s=0.0, journal=whole), "--out", str(tmp_path / "whole"), *argv) == 0
    capsys.readouterr()
    assert evolve_with(InterruptedAfter(cost_s=0.0, journal=cut, after=7), "--out", str(tmp_path / "cut"), *argv) == 130
    assert evolve_with(InterruptedAfter(cost_s=0.0, journal=cut), "--resume", str(tmp_path / "cut")) == 0
    assert set(journal_starts(tmp_path / "cut.log").values()) == {1}  # no evaluation ran twice
    assert history(tmp_path / "cut") == history(tmp_path / "whole")
    register_protocol(InterruptedAfter(cost_s=0.0, journal=whole))
    try:
        run = load_run(tmp_path / "whole")
    finally:
        unregister_protocol("synthetic-vd")
    assert run.config["operator_genes"] is True
    outside = {get_class(slot.cls).name for e in run.evaluations for slot in Genome.parse(e.genome).slots
               if isinstance(slot.cls, tuple)}  # fmt: skip
    assert outside and all(name.startswith("[") for name in outside)
    report = (tmp_path / "whole" / "report.html").read_text()
    assert any(name in report for name in outside)  # reports name a class outside the pool by its genome
    with RunStore(tmp_path / "whole") as store:
        assert all(e.hash == Genome.parse(e.genome).hash() for e in store.evaluations())
    assert set(class_ids()) <= ALL_KEYS
