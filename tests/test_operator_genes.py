"""Operator genes: validity and repair of ``[f,t,s,n,c]``, the pool's 17 classes unchanged, the new combinations.

The layer properties (causal, parallel form == recurrent form, measured state == analytic cache, gradients)
are asserted for every valid operator genome in ``tests/test_liv.py``.
"""

import itertools
import json
import re
from pathlib import Path

import pytest
import torch

from starlab.cli import main
from starlab.genome import Genome
from starlab.liv import LIVConfig, build_liv, class_ids, class_key, get_class, valid_operator_genomes
from starlab.liv.operator import OPERATOR_GENE_RANGES, is_valid, why_invalid
from starlab.liv.operator import repair_operator as repair
from starlab.model import Backbone

CONFIG = LIVConfig(head_dim=16, recurrence_head_dim=8, scan_chunk=8)
IN_RANGE = list(itertools.product(*(range(low, high + 1) for low, high in OPERATOR_GENE_RANGES)))
REFERENCE = json.loads((Path(__file__).parent / "data" / "pool_layers_reference.json").read_text())


def test_the_valid_combinations_are_the_pool_and_45_more():
    valid = valid_operator_genomes()
    assert len(valid) == 62
    pool = [genes for genes in valid if isinstance(class_key(genes), int)]
    assert sorted(class_key(genes) for genes in pool) == class_ids()
    assert all(get_class(i).operator_genome in valid for i in class_ids())


def test_every_in_range_genome_is_valid_or_has_a_reason_and_repairs_to_a_valid_one():
    for genes in IN_RANGE:
        reason = why_invalid(genes)
        if reason is None:
            assert get_class(genes).operator_genome == genes  # a valid genome is a class
        else:
            with pytest.raises(ValueError, match=re.escape(reason)):  # an invalid one is refused for its reason
                get_class(genes)
        repaired = repair(genes)
        assert is_valid(repaired), (genes, repaired)
        assert repair(repaired) == repaired
        if reason is None:
            assert repaired == genes  # repair leaves valid genomes alone
        else:
            assert repaired[0] == genes[0]  # the featurizer is what repair keeps


def test_repair_keeps_what_fits_and_replaces_the_rest_with_the_featurizers_pool_value():
    assert repair((1, 4, 1, 1, 3)) == (1, 2, 1, 1, 3)  # Q/K/V features fill low-rank mixing: t back to 2
    assert repair((3, 2, 1, 2, 2)) == (3, 2, 1, 2, 3)  # grouped K/V cannot be one head
    assert repair((5, 4, 1, 2, 3)) == (5, 4, 1, 1, 3)  # no softmax over a recurrence
    assert repair((9, 3, 1, 2, 1)) == (9, 1, 1, 4, 2)  # the gated MLP is GMemless again
    with pytest.raises(ValueError, match=r"gene 'channel_mixing': expected an integer in 1\.\.3"):
        repair((1, 2, 1, 2, 7))


def test_invalid_genomes_are_named_with_the_reason():
    with pytest.raises(ValueError, match=r"\[5,2,1,1,1\] is not valid: featurizer 5 \(Rec-1\) fills semi-separable"):
        get_class((5, 2, 1, 1, 1))
    with pytest.raises(ValueError, match="cannot mix all channels as one head"):
        get_class((4, 2, 1, 1, 2))


@pytest.mark.parametrize("class_id", class_ids())
def test_the_17_pool_classes_build_and_compute_as_before_operator_genes(class_id):
    """Same parameters and the same outputs for the same seed as the layers before operator genes existed
    (``tests/data/pool_layers_reference.json``, written by the code of commit bcb28f4)."""
    by_genome = get_class(get_class(class_id).operator_genome)
    assert by_genome is get_class(class_id)
    torch.manual_seed(class_id)
    layer = build_liv(class_id, 32, CONFIG)
    reference = REFERENCE[str(class_id)]
    assert {n: list(p.shape) for n, p in layer.named_parameters()} == reference["parameters"]
    x = torch.randn(2, 19, 32, generator=torch.Generator().manual_seed(100 + class_id))
    outputs = layer(x)[:, ::3, ::5].flatten()
    torch.testing.assert_close(outputs, torch.tensor(reference["outputs"]), rtol=1e-5, atol=1e-6)


def test_linear_attention_has_a_constant_state_that_softmax_attention_does_not():
    linear, softmax = build_liv((1, 2, 1, 1, 3), 64), build_liv(1, 64)
    assert get_class((1, 2, 1, 1, 3)).kind == "linear_attention"
    assert linear.cache_bytes(1024) == linear.cache_bytes(2048) == 2 * 64 * 64  # one 64x64 state, 16-bit
    assert softmax.cache_bytes(2048) == 2 * softmax.cache_bytes(1024)
    assert sum(p.numel() for p in linear.parameters()) == sum(p.numel() for p in softmax.parameters())


def test_recurrences_with_grouped_and_dense_channel_mixing():
    diagonal, grouped, dense = (build_liv((5, 4, 1, 1, c), 64, CONFIG) for c in (1, 3, 2))
    assert (diagonal.heads, grouped.heads, dense.heads) == (8, 8, 1)
    assert grouped.featurizer.c_proj.out_features == 8 * diagonal.featurizer.c_proj.out_features  # B, C per head
    assert dense.head_dim == 64 and dense.featurizer.log_rate.numel() == 1  # one decay for all channels
    assert diagonal.cached_cache_values(10) < grouped.cached_cache_values(10)  # per-head B in the conv window


@pytest.mark.parametrize("genes", [g for g in valid_operator_genomes() if 2 <= g[0] - 9 <= 8])
def test_the_differential_flag_doubles_any_combination(genes):
    diff, base = get_class(genes), get_class((genes[0] - 9, *genes[1:]))
    assert diff.differential and get_class(diff.base) is base
    assert build_liv(genes, 32, CONFIG).cache_bytes(50) == 2 * build_liv(base.operator_genome, 32, CONFIG).cache_bytes(
        50
    )


# ---- operator genomes in a backbone genome --------------------------------------------------------------


def test_a_genome_slot_takes_an_operator_genome_in_place_of_a_class_id():
    genome = Genome.parse("[1,2,1,1,3],1,1,1,1-91111")
    assert genome.slots[0].cls == (1, 2, 1, 1, 3) and genome.text() == "[1,2,1,1,3],1,1,1,1-91111"
    assert genome.to_json()["slots"][0] == [[1, 2, 1, 1, 3], 1, 1, 1, 1]
    assert Genome.from_json(genome.to_json()) == genome
    assert Genome.from_slots([[[1, 2, 1, 1, 3], 1, 1, 1, 1], [9, 1, 1, 1, 1]]) == genome


def test_an_operator_genome_that_is_a_pool_class_is_that_class():
    written_out = Genome.parse("[1,2,1,2,3],1,1,1,1-[9,1,1,4,2],1,1,1,1")
    assert written_out.text() == "11111-91111"
    assert written_out.hash() == Genome.parse("11111-91111").hash()
    assert Genome.parse("[1,2,1,1,3],1,1,1,1-91111").hash() != written_out.hash()


def test_invalid_operator_genomes_in_a_genome_are_named_or_repaired():
    with pytest.raises(ValueError, match=r"slot 2, field 'class': operator genome \[5,2,1,1,1\] is not valid"):
        Genome.parse("11111-[5,2,1,1,1],1,1,1,1")
    assert Genome.parse("11111-[5,2,1,1,1],1,1,1,1", repair=True).text() == "11111-51111"
    with pytest.raises(ValueError, match=r"slot 1: an operator genome is 5 comma-separated integers"):
        Genome.parse("[1,2,1],1,1,1,1")


def test_sharing_between_operator_genomes_follows_their_features():
    # two linear attentions share their constant state; linear and softmax attention cache different things
    genome = Genome.parse("[1,2,1,1,3],1,2,1,2-[1,2,1,1,3],1,2,1,2")
    assert genome.featurizer_leaders() == [0, 0] and genome.feature_sources() == [0, 0]
    with pytest.raises(ValueError, match=r"\[1,2,1,1,3\] cannot share features with slot 1 \(SA-1\)"):
        Genome.parse("11112-[1,2,1,1,3],1,1,1,2")
    model = Backbone(genome, 32, 16, CONFIG)
    alone = Backbone(Genome.parse("[1,2,1,1,3],1,1,1,1-[1,2,1,1,3],1,1,1,1"), 32, 16, CONFIG)
    assert model.cache_bytes(100) * 2 == alone.cache_bytes(100)
    assert model.num_params() < alone.num_params()


def test_liv_build_reports_params_and_a_constant_cache_for_linear_attention(capsys):
    rows = []
    for seq_len in ("1024", "2048"):
        assert main(["liv", "build", "[1,2,1,1,3]", "--width", "256", "--seq-len", seq_len, "--json"]) == 0
        rows.append(json.loads(capsys.readouterr().out))
    assert rows[0] == rows[1]
    assert rows[0]["params"] == 4 * 256 * 256 and rows[0]["cache_bytes"] == 4 * 64 * 64 * 2  # 4 heads of 64
    assert rows[0]["name"] == "[1,2,1,1,3]" and rows[0]["id"] is None


def test_liv_build_refuses_an_invalid_operator_genome_in_one_line_or_repairs_it(capsys):
    assert main(["liv", "build", "[5,2,1,1,1]", "--width", "64"]) == 2
    error = capsys.readouterr().err
    assert "[5,2,1,1,1] is not valid: featurizer 5 (Rec-1) fills semi-separable" in error and error.count("\n") == 1
    assert main(["liv", "build", "[5,2,1,1,1]", "--width", "64", "--repair", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Rec-1"


@pytest.mark.parametrize("text, refusal", [
    ("[1,2,1,1,3", "has its bracket left open"),
    ("1,2,1,1,3]", "has its bracket closed but never opened"),
    ("[١,2,1,1,3]", "is 5 comma-separated integers"),
    ("[１,2,1,1,3]", "is 5 comma-separated integers"),
    ("[3]", "is 5 comma-separated integers"),
    ("１", "unknown LIV class '１'"),
    ("٣", "unknown LIV class '٣'"),
])  # fmt: skip
def test_an_open_bracket_or_a_digit_outside_ascii_is_refused(text, refusal):
    """``int`` reads Arabic-Indic and fullwidth digits, and the brackets were stripped one at a time: these
    built [1,2,1,1,3], SA-1 and SA-3 (issue 30). Each is refused for its own reason: an operator genome's
    brackets and digits by the parser, a lone non-ASCII digit as a class name no class has."""
    from starlab.liv.operator import parse_operator

    with pytest.raises(ValueError, match=re.escape(refusal)):
        get_class(parse_operator(text))


def test_an_operator_genome_reads_with_or_without_its_brackets_and_a_class_id_with_spaces():
    from starlab.liv.operator import parse_operator

    assert parse_operator(" [1,2,1,1,3] ") == parse_operator("1,2,1,1,3") == (1, 2, 1, 1, 3)
    assert get_class(parse_operator(" 3 ")).name == "SA-3"


def test_liv_list_operators_lists_every_valid_combination(capsys):
    assert main(["liv", "list", "--operators", "--width", "64", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(valid_operator_genomes())
