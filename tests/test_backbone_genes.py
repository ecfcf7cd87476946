"""Backbone genes in the model: every norm kind x position x residual form builds a causal network whose two
forms agree, whose sizes are exact and whose cache the genes leave alone; the default is the backbone as it
was before the genes existed, weight for weight and logit for logit."""

import dataclasses
import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from starlab.genome import BackboneGenes, Genome
from starlab.liv import LIVConfig
from starlab.model import Backbone, BackboneSpec, estimate_model_bytes, get_flavour, measured_cache_bytes, size_report
from test_model import decode_logits

WIDTH, VOCAB = 16, 11
CONFIG = LIVConfig(head_dim=8, recurrence_head_dim=8, scan_chunk=4)
REFERENCE = Path(__file__).parent / "data" / "backbone_reference.pt"
COMBINATIONS = list(itertools.product((1, 2, 3), (1, 2), (1, 2)))
GENOMES = {
    # slot 2 reuses slot 1's K/V (its pair partner when parallel); Rec-1, GMemless, and an odd last slot
    "pair-sharing": "11112-11112-51111-91111-81111",
    # feature-group and featurizer sharing across pairs: slot 3 reuses slot 1's K/V and shares slot 4's featurizer
    "mixed-sharing": "11112-91111-11212-11211-91111",
}


def with_genes(text, genes):
    return dataclasses.replace(Genome.parse(text), backbone=BackboneGenes(*genes))


def build(genome, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = Backbone(genome, WIDTH, VOCAB, CONFIG, **kwargs)
    for parameter in model.parameters():  # off the initialisation (unit norm gains, zero biases)
        parameter.data.add_(0.1 * torch.randn_like(parameter))
    return model


def test_the_default_backbone_is_the_one_before_backbone_genes():
    """Weights and logits of models built by commit 3f966b2 (tests/data/make_backbone_reference.py)."""
    reference = torch.load(REFERENCE)
    tokens = reference["tokens"]
    for case in reference["cases"]:
        torch.manual_seed(3)
        model = Backbone(Genome.parse(case["genome"]), WIDTH, VOCAB, CONFIG, **case["kwargs"])
        state = model.state_dict()
        assert list(state) == list(case["state_dict"]), case["genome"]
        for name, tensor in state.items():
            assert torch.equal(tensor, case["state_dict"][name]), (case["genome"], name)
        with torch.no_grad():
            torch.testing.assert_close(model(tokens), case["logits"], rtol=0, atol=1e-6)
            torch.testing.assert_close(decode_logits(model, tokens), case["step_logits"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("genes", COMBINATIONS, ids=lambda g: "b" + "".join(map(str, g)))
@pytest.mark.parametrize("name", GENOMES)
def test_every_gene_combination_is_causal_with_equal_forms_and_exact_sizes(name, genes):
    genome = with_genes(GENOMES[name], genes)
    model = build(genome)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(tokens)
        torch.testing.assert_close(decode_logits(model, tokens), logits, rtol=1e-5, atol=1e-5)
        changed = tokens.clone()
        changed[:, 5:] = (changed[:, 5:] + 1) % VOCAB
        torch.testing.assert_close(model(changed)[:, :5], logits[:, :5], rtol=0, atol=1e-6)
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    assert estimate_model_bytes(genome, WIDTH, VOCAB, CONFIG) == parameter_bytes + buffer_bytes
    report = size_report(genome, WIDTH, VOCAB, seq_len=7, config=CONFIG)
    final = sum(p.numel() for p in model.final_norm.parameters())
    assert report.params == model.num_params() == sum(s.params for s in report.slots) + final + WIDTH * VOCAB
    default = build(Genome.parse(GENOMES[name]))
    assert model.cache_bytes(7) == default.cache_bytes(7) == measured_cache_bytes(model, 7)
    model(tokens).logsumexp(-1).mean().backward()
    for parameter_name, parameter in model.named_parameters():  # no norm is built without being used
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


def test_the_norms_each_combination_builds():
    def kinds(genes):
        model = build(with_genes("11111-91111-51111", genes))
        return [type(norm).__name__ for norm in (*model.norms, model.final_norm)]

    assert kinds((1, 1, 1)) == ["RMSNorm"] * 4
    assert kinds((2, 1, 2)) == ["LayerNorm"] * 4  # pre-norm: each slot of a pair normalises the same input
    assert kinds((2, 2, 1)) == ["LayerNorm"] * 3 + ["Identity"]  # post-norm: the stream ends normed
    assert kinds((1, 2, 2)) == ["Identity", "RMSNorm", "RMSNorm", "Identity"]  # one norm per residual add
    assert kinds((3, 1, 2)) == ["Identity"] * 4
    layernorm = build(with_genes("11111-91111", (2, 1, 1))).norms[0]
    assert layernorm.bias is not None and layernorm.eps == 1e-5


def recording_inputs(model):
    """The inputs each slot is given (in slot order), recorded as the backbone calls its slots."""
    inputs = []
    for liv in model.livs:
        forward_features = liv.forward_features

        def record(x, shared=None, forward_features=forward_features):
            inputs.append(x)
            return forward_features(x, shared)

        liv.forward_features = record
    return inputs


def test_a_parallel_pair_reads_one_input_and_both_add_to_it():
    """Without norms, slot 2 of a parallel pair sees what slot 1 sees; sequentially it sees slot 1's output."""
    seen = {}
    x = torch.randn(2, 5, WIDTH)
    for residual in (1, 2):
        model = build(with_genes("11111-91111", (3, 1, residual)))
        inputs = recording_inputs(model)
        with torch.no_grad():
            out = model.hidden_states(x)
            seen[residual] = list(inputs)
            y1, y2 = (liv(h) for liv, h in zip(model.livs, seen[residual], strict=True))
        torch.testing.assert_close(out, x + y1 + y2)
    assert torch.equal(seen[2][0], x) and torch.equal(seen[2][1], x)
    assert torch.equal(seen[1][0], x) and not torch.allclose(seen[1][1], x)


def test_post_norm_normalises_after_the_add():
    model = build(with_genes("91111", (2, 2, 1)))
    x = torch.randn(2, 3, WIDTH)
    with torch.no_grad():
        torch.testing.assert_close(model.hidden_states(x), model.norms[0](x + model.livs[0](x)))


def test_bad_init_is_one_line():
    with pytest.raises(ValueError, match=r"^init must be one of star, gpt2, got 'hf'$"):
        Backbone(Genome.parse("11111-91111"), WIDTH, VOCAB, init="hf")


def test_a_flavour_keeps_a_genomes_own_genes_only_when_they_agree():
    gpt2 = get_flavour("gpt2")
    assert gpt2.genome(Genome.parse("11111-91111")).backbone == BackboneGenes(2, 1, 1)
    assert gpt2.genome(Genome.parse("b211:11111-91111")).backbone == BackboneGenes(2, 1, 1)
    with pytest.raises(ValueError, match=r"gpt2 backbone builds with backbone genes b211; .* has its own \(b312\)"):
        gpt2.genome(Genome.parse("b312:11111-91111"))
    with pytest.raises(ValueError, match="unknown backbone 'gpt3'; backbones: star, gpt2"):
        get_flavour("gpt3")


LOAD = textwrap.dedent("""
    import json, sys
    sys.modules["starlab"] = None  # the export must not need starlab
    import torch
    from transformers import AutoModelForCausalLM
    root, names = sys.argv[1], sys.argv[2:]
    data, errors = torch.load(f"{root}/expected.pt"), {}
    for name in names:
        model = AutoModelForCausalLM.from_pretrained(f"{root}/{name}", trust_remote_code=True)
        errors[name] = (model(data[name]["tokens"]).logits - data[name]["logits"]).abs().max().item()
    print(json.dumps(errors))
""")


def test_non_default_backbones_export_to_hugging_face_with_equal_logits(tmp_path):
    pytest.importorskip("transformers")
    from starlab.hf.export import save_hf

    models = {
        "layernorm-post-parallel": Backbone(with_genes(GENOMES["pair-sharing"], (2, 2, 2)), WIDTH, 256, CONFIG),
        "no-norm": Backbone(with_genes(GENOMES["mixed-sharing"], (3, 1, 2)), WIDTH, 256, CONFIG),
        "gpt2": get_flavour("gpt2").build(
            BackboneSpec(Genome.parse("11111-91111-11111-91111"), WIDTH, 256, CONFIG, max_positions=32)
        ),
    }
    expected = {}
    for name, model in models.items():
        for parameter in model.parameters():
            parameter.data.add_(0.1 * torch.randn_like(parameter))
        save_hf(model, tmp_path / name, source="test")
        tokens = torch.randint(0, 256, (2, 10))
        with torch.no_grad():
            expected[name] = {"tokens": tokens, "logits": model(tokens)}
    torch.save(expected, tmp_path / "expected.pt")
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(tmp_path), *models], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    errors = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(errors) == set(models) and max(errors.values()) < 1e-5, errors
