"""The ``gpt2`` backbone flavour is Hugging Face's GPT2LMHeadModel (the random-transformer paper's network):
equal logits for copied weights, GPT-2's initialisation, and embedding-only training of exactly wte, wpe and
lm_head, through the algorithmic and LM protocols and the CLI."""

import json
import math

import pytest
import torch

from starlab.assess import assess, get_protocol
from starlab.cli import main
from starlab.genome import preset
from starlab.liv import LIVConfig
from starlab.model import BackboneSpec, get_flavour
from test_model import decode_logits

transformers = pytest.importorskip("transformers")

VOCAB, POSITIONS = 13, 20


def gpt2(width, blocks=2, vocab=VOCAB, positions=POSITIONS):
    return get_flavour("gpt2").build(
        BackboneSpec(preset("transformer++", 2 * blocks), width, vocab, LIVConfig(), max_positions=positions)
    )


def hugging_face(model):
    """A GPT2LMHeadModel holding ``model``'s weights (HF's Conv1D stores them transposed; c_attn is q, k, v)."""
    blocks = len(model.livs) // 2
    config = transformers.GPT2Config(
        vocab_size=model.vocab_size, n_positions=model.pos_embed.num_embeddings, n_embd=model.width,
        n_layer=blocks, n_head=4, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=False,
    )  # fmt: skip
    weights = {
        "transformer.wte.weight": model.embed.weight, "transformer.wpe.weight": model.pos_embed.weight,
        "transformer.ln_f.weight": model.final_norm.weight, "transformer.ln_f.bias": model.final_norm.bias,
        "lm_head.weight": model.head.weight,
    }  # fmt: skip
    for block in range(blocks):
        attention, mlp = model.livs[2 * block], model.livs[2 * block + 1]
        q, kv, up = attention.featurizer.q_proj, attention.featurizer.kv_proj, mlp.featurizer.up
        parts = {
            "ln_1": model.norms[2 * block], "ln_2": model.norms[2 * block + 1], "attn.c_proj": attention.out_proj,
            "mlp.c_fc": up, "mlp.c_proj": mlp.out_proj,
        }  # fmt: skip
        for name, module in parts.items():
            transpose = not isinstance(module, torch.nn.LayerNorm)
            weights[f"transformer.h.{block}.{name}.weight"] = module.weight.T if transpose else module.weight
            weights[f"transformer.h.{block}.{name}.bias"] = module.bias
        weights[f"transformer.h.{block}.attn.c_attn.weight"] = torch.cat([q.weight, kv.weight]).T
        weights[f"transformer.h.{block}.attn.c_attn.bias"] = torch.cat([q.bias, kv.bias])
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.load_state_dict({name: tensor.detach().clone() for name, tensor in weights.items()}, strict=True)
    return hf


@pytest.mark.parametrize(("width", "blocks"), [(16, 2), (32, 3)])
def test_the_gpt2_flavour_is_hugging_face_gpt2(width, blocks):
    torch.manual_seed(0)
    model = gpt2(width, blocks)
    for parameter in model.parameters():  # biases and LayerNorms off their initial 0 and 1
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    hf = hugging_face(model)
    assert model.num_params() == sum(p.numel() for p in hf.parameters())
    tokens = torch.randint(0, VOCAB, (3, POSITIONS))
    with torch.no_grad():
        logits = model(tokens)
        assert (hf(tokens).logits - logits).abs().max() < 1e-5
        torch.testing.assert_close(decode_logits(model, tokens), logits, rtol=1e-5, atol=1e-5)


def test_the_gpt2_initialisation_is_hugging_faces():
    torch.manual_seed(0)
    model, blocks = gpt2(256, blocks=2, vocab=512, positions=64), 2
    output_std = 0.02 / math.sqrt(2 * blocks)

    def std(tensor):
        return tensor.detach().std().item()

    for name, parameter in model.named_parameters():
        if name.endswith("bias"):
            assert not parameter.any(), name
        elif name.startswith("norms.") or name.startswith("final_norm."):
            assert torch.equal(parameter, torch.ones_like(parameter)), name
        else:
            expected = output_std if name.endswith("out_proj.weight") else 0.02
            assert std(parameter) == pytest.approx(expected, rel=0.05), name
            assert abs(parameter.mean().item()) < 0.1 * expected, name
    hf = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=512, n_positions=64, n_embd=256, n_layer=blocks, n_head=4)
    )
    for name in ("attn.c_proj", "mlp.c_proj"):  # how we read HF's rule: both output projections are scaled
        assert std(hf.get_submodule(f"transformer.h.0.{name}").weight) == pytest.approx(output_std, rel=0.05)
    assert std(hf.transformer.h[0].mlp.c_fc.weight) == pytest.approx(0.02, rel=0.05)


def test_embedding_only_gpt2_trains_exactly_wte_wpe_and_lm_head(monkeypatch):
    import starlab.assess.algorithmic as algorithmic

    seen, train = {}, algorithmic.train

    def spy(model, task, config, *args, **kwargs):
        seen["model"], seen["before"] = model, {n: p.detach().clone() for n, p in model.named_parameters()}
        return train(model, task, config, *args, **kwargs)

    monkeypatch.setattr(algorithmic, "train", spy)
    protocol = get_protocol("algo-parentheses").with_settings(backbone="gpt2", embedding_only=True, steps=3)
    evaluation = assess(preset("transformer++", 4), protocol, width=16)
    model = seen["model"]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"embed.weight", "pos_embed.weight", "head.weight"}
    assert model.genome.backbone == (2, 1, 1) and model.config.mlp == "gelu" and model.config.bias
    for name, parameter in model.named_parameters():
        moved = not torch.equal(parameter, seen["before"][name])
        assert moved == (name in trainable), name
    assert evaluation.metrics["trainable_params"] == 16 * (4 + 4 + model.pos_embed.num_embeddings)


def test_the_backbone_flavour_is_a_protocol_setting():
    star, flavoured = get_protocol("algo-decimal"), get_protocol("algo-decimal").with_settings(backbone="gpt2")
    assert star.backbone == "star" and flavoured.training()["backbone"] == "gpt2"
    assert "gpt2 backbone" in flavoured.training()["summary"]
    lm = get_protocol("lm-tiny").with_settings(backbone="gpt2")
    assert lm.training()["backbone"] == "gpt2"
    for name in ("algo-decimal", "lm-tiny"):
        with pytest.raises(ValueError, match="setting backbone must be one of star, gpt2, got 'gpt3'"):
            get_protocol(name).with_settings(backbone="gpt3")


def test_lm_trains_an_embedding_only_gpt2(monkeypatch, capsys):
    import starlab.assess.lm as lm_module

    seen, train = {}, lm_module.train

    def spy(model, task, config, *args, **kwargs):
        seen["model"] = model
        return train(model, task, config, *args, **kwargs)

    monkeypatch.setattr(lm_module, "train", spy)
    argv = ["lm", "transformer++", "--depth", "2", "--protocol", "lm-tiny", "--embedding-only", "--backbone", "gpt2"]
    assert main([*argv, "--steps", "2", "--json"]) == 0
    model = seen["model"]
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    assert model.pos_embed.num_embeddings == get_protocol("lm-tiny").seq_len and model.head is not None
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        "embed.weight",
        "pos_embed.weight",
        "head.weight",
    }


def test_algo_command_takes_the_backbone(capsys):
    argv = ["algo", "transformer++", "--task", "decimal-addition", "--backbone", "gpt2", "--embedding-only"]
    assert main([*argv, "--steps", "2", "--width", "16", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backbone"] == "gpt2" and report["status"] == "completed"
    assert report["params"] == gpt2(16, vocab=31, positions=12).num_params()


def test_a_saved_gpt2_loads_as_the_same_model(tmp_path):
    import starlab
    from starlab.model.serialization import save

    model = gpt2(16)
    save(model, tmp_path / "model")
    loaded, tokens = starlab.load(tmp_path / "model"), torch.randint(0, VOCAB, (2, POSITIONS))
    assert loaded.genome.text() == "b211:11111-91111-11111-91111" and loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model(tokens))
