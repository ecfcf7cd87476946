"""The backbone built from a genome: sharing is real, both forms agree, sizes are exact."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import in_range_slots, relabel
from starlab.genome import Genome, preset
from starlab.liv import LIVConfig, build_featurizer, build_liv, class_ids, get_class
from starlab.model import Backbone, measured_cache_bytes, size_report, training_flops_per_token

WIDTH, VOCAB = 16, 11
CONFIG = LIVConfig(head_dim=8, recurrence_head_dim=8, scan_chunk=4)
SHAREABLE = [i for i in class_ids() if get_class(i).feature_signature is not None]


def model(genome, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Backbone(genome, WIDTH, VOCAB, CONFIG, **kwargs)


def decode_logits(m, tokens):
    state, out = m.init_state(tokens.shape[0]), []
    for t in range(tokens.shape[1]):
        logits, state = m.step(tokens[:, t], state)
        out.append(logits)
    return torch.stack(out, dim=1)


def numel(module_or_pair):
    modules = module_or_pair if isinstance(module_or_pair, tuple) else (module_or_pair,)
    return sum(p.numel() for m in modules for p in m.parameters())


def test_calibration_transformer_pp_1b_cache():
    report = size_report(preset("transformer++", 48), width=2048, vocab_size=50257, seq_len=4096)
    assert report.cache_bytes == 805_306_368  # 2 * 2048 * 4096 * 2 bytes * 24 attention slots


@pytest.mark.parametrize("class_id", class_ids())
def test_featurizer_sharing_saves_exactly_one_featurizer(class_id):
    alone = Genome.parse(f"{class_id},1,1,1,1-{class_id},2,1,2,1")
    shared = Genome.parse(f"{class_id},1,2,1,1-{class_id},1,2,2,1")
    m = model(shared)
    assert m.livs[0].featurizer is m.livs[1].featurizer or m.livs[0].featurizer == m.livs[1].featurizer
    saved = model(alone).num_params() - m.num_params()
    assert saved == numel(build_featurizer(class_id, WIDTH, CONFIG)) > 0


@pytest.mark.parametrize("class_id", SHAREABLE)
def test_feature_sharing_saves_exactly_the_shared_cache(class_id):
    alone = model(Genome.parse(f"{class_id},1,1,1,1-{class_id},1,1,2,1"))
    shared = model(Genome.parse(f"{class_id},1,1,1,2-{class_id},1,1,1,2"))
    length = 7
    saved = measured_cache_bytes(alone, length) - measured_cache_bytes(shared, length)
    full = build_liv(class_id, WIDTH, CONFIG).cache_bytes(length)
    own_only = build_liv(class_id, WIDTH, CONFIG, reuse_features=True).cache_bytes(length)
    assert saved == full - own_only > 0
    assert measured_cache_bytes(shared, length) == shared.cache_bytes(length)


@pytest.mark.parametrize("name", ["transformer++", "mamba", "hyena"])
def test_a_backbone_traces_into_one_graph_for_torch_compile(name):
    """No graph breaks (the token-range check runs on the device while compiling), and a bad id still fails."""
    import torch._dynamo

    m = model(preset(name, 2))
    tokens = torch.randint(0, m.vocab_size, (2, 8))
    assert torch._dynamo.explain(m)(tokens).graph_break_count == 0
    compiled = torch.compile(m, backend="eager")
    with pytest.raises(RuntimeError, match="token ids out of range"):
        compiled(tokens + m.vocab_size)


def test_training_flops_count_shared_weights_per_use_and_each_attention_map_per_position():
    """Sharing a featurizer saves parameters, not multiplications; the attention term grows with L per map
    (one for SA-1, two for differential SA-1, none for a recurrence)."""
    alone, shared = (model(Genome.parse(text)) for text in ("1,1,1,1,1-1,2,1,2,1", "1,1,2,1,1-1,1,2,2,1"))
    assert shared.num_params() < alone.num_params()
    assert training_flops_per_token(shared, 64) == training_flops_per_token(alone, 64)
    for genome, maps in (("1,1,1,1,1-9,1,1,1,1", 1), ("10,1,1,1,1-9,1,1,1,1", 2), ("5,1,1,1,1-9,1,1,1,1", 0)):
        m = model(Genome.parse(genome))
        growth = training_flops_per_token(m, 2048) - training_flops_per_token(m, 1024)
        assert growth == 12 * maps * WIDTH * 1024, genome


@settings(max_examples=30)
@given(in_range_slots(max_depth=6, max_group=2), st.integers(0, 1000))
def test_random_genomes_with_sharing_are_causal_and_both_forms_agree(slots, seed):
    genome = Genome.from_slots(slots, repair=True)
    m = model(genome, seed)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(seed))
    logits = m(tokens)
    torch.testing.assert_close(decode_logits(m, tokens), logits, rtol=1e-4, atol=1e-4)
    changed = tokens.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % VOCAB
    torch.testing.assert_close(m(changed)[:, :5], logits[:, :5], rtol=1e-5, atol=1e-5)
    assert measured_cache_bytes(m, 4) == m.cache_bytes(4)


@settings(max_examples=15)
@given(in_range_slots(max_depth=6, max_group=2), st.integers(0, 2**16))
def test_relabelled_genomes_build_the_same_model(slots, seed):
    genome = Genome.from_slots(slots, repair=True)
    a, b = model(genome), model(relabel(genome, seed))
    tokens = torch.randint(0, VOCAB, (1, 6))
    assert a.num_params() == b.num_params()
    torch.testing.assert_close(a(tokens), b(tokens), rtol=0, atol=0)


def test_gradients_reach_every_parameter_with_mixed_sharing():
    # slot 1 leads feature group 1; slot 3 reuses its K/V and leads featurizer group 1, whose other member
    # (slot 4) computes its own K/V: the shared featurizer needs its cached side for slot 4 only
    genome = Genome.parse("11112-91111-11212-11211-91111")
    m = model(genome)
    assert m.livs[2].featurizer is m.livs[3].featurizer and m.livs[2].reuse_features
    m(torch.randint(0, VOCAB, (2, 8))).logsumexp(-1).mean().backward()
    for name, param in m.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_greedy_generation_matches_the_parallel_form():
    m = model(preset("striped-mamba", 4))
    prompt = torch.randint(0, VOCAB, (2, 3))
    out = m.generate(prompt, max_new_tokens=5, temperature=0)
    assert out.shape == (2, 8) and torch.equal(out[:, :3], prompt)
    for t in range(3, 8):
        assert torch.equal(m(out[:, :t])[:, -1].argmax(-1), out[:, t])


def test_sampling_is_seeded():
    """Equal generators draw equal samples, and ``temperature`` and ``top_k`` shape what is drawn."""
    m = model(preset("transformer++", 2))
    prompt = torch.arange(8)[:, None] % VOCAB

    def draw(steps=30, seed=1, start=prompt, **kwargs):
        return m.generate(start, steps, generator=torch.Generator().manual_seed(seed), **kwargs)

    assert torch.equal(draw(6, temperature=1.0, top_k=5), draw(6, temperature=1.0, top_k=5))
    assert not torch.equal(draw(temperature=1.0), draw(temperature=1.0, seed=2))  # 240 draws from 11 tokens
    greedy = m.generate(prompt, 30, temperature=0)
    # top_k=1 leaves only the argmax, whatever the temperature; a tiny temperature makes sampling one-hot
    # (the top two logits of this model differ by at least 0.67 at every step)
    assert torch.equal(draw(top_k=1, temperature=50.0), greedy)
    assert torch.equal(draw(temperature=1e-3), greedy)
    # top_k=3 at a high temperature: every token is one of the 3 most likely after its own prefix (the same
    # recurrent steps generate took, so ties compare exactly), and not always the most likely one
    sampled = draw(top_k=3, temperature=5.0)
    logits = decode_logits(m, sampled[:, :-1])[:, prompt.shape[1] - 1 :]  # position t-1 scores token t
    chosen = logits.gather(-1, sampled[:, prompt.shape[1] :, None])
    assert (chosen >= logits.topk(3, dim=-1).values[..., -1:]).all()
    assert (chosen < logits.amax(-1, keepdim=True)).any()
    # one next token drawn 200 times from the same prompt: a high temperature spreads it over the vocabulary
    same = torch.zeros(200, 1, dtype=torch.long)
    cold, hot = (draw(1, start=same, temperature=t)[:, 1].unique().numel() for t in (0.05, 10.0))
    assert cold == 1 and hot >= VOCAB - 1


def test_parameter_counts():
    tied, untied = model(preset("transformer++", 2)), model(preset("transformer++", 2), tie_embeddings=False)
    assert untied.num_params() - tied.num_params() == VOCAB * WIDTH
    assert tied.num_params() - tied.num_params(non_embedding=True) == VOCAB * WIDTH
    assert untied.num_params(non_embedding=True) == tied.num_params(non_embedding=True)
    report = size_report(preset("transformer++", 2), WIDTH, VOCAB, seq_len=16, config=CONFIG)
    assert report.params == tied.num_params()
    final_norm = WIDTH
    assert sum(s.params for s in report.slots) + final_norm == report.params_non_embedding


def test_bad_tokens_are_clear_errors():
    m = model(preset("transformer++", 2))
    with pytest.raises(ValueError, match=r"token ids must be in 0..10, got 0..11"):
        m(torch.tensor([[0, 11]]))
    with pytest.raises(ValueError, match="int64 tensor"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        m(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 2"):
        Backbone(preset("mamba", 2), WIDTH, 1)
