"""Hugging Face export: a directory ``transformers`` loads with ``trust_remote_code`` where starlab is not
importable, whose logits are starlab's for every LIV class, every operator genome outside the pool, backbone
genes and both kinds of sharing, whose ``generate`` is starlab's greedy decoding, and whose cache is the
recurrent state (constant for recurrences and short convolutions, growing for attention, a feature group's
held once).

The loading side runs in one subprocess with ``starlab`` blocked from import, so the exported code cannot
lean on the installed package.
"""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from starlab.genome import Genome
from starlab.liv import LIVConfig, class_ids, class_key, valid_operator_genomes
from starlab.model import Backbone
from starlab.tasks.tokenizer import ByteTokenizer

pytest.importorskip("transformers")
from starlab.hf.export import save_hf

CONFIG = LIVConfig(head_dim=8, recurrence_head_dim=8, scan_chunk=4)


def composed_operator_genomes() -> list[tuple[int, ...]]:
    return [key for key in valid_operator_genomes() if isinstance(class_key(key), tuple)]


GENOMES = {
    "every-class": "-".join(f"{c},1,1,1,1" for c in class_ids()),  # all 17, one slot each
    # featurizer sharing (SA-1, Rec-1, GConv-2 pairs) and feature-group sharing (SA-1 K/V, Rec-2 state)
    "sharing": "1,1,2,1,1-1,1,2,2,1-5,2,2,3,1-5,2,2,4,1-8,3,2,5,1-8,3,2,6,1-1,1,1,7,2-1,1,1,7,2-6,1,1,8,2-6,1,1,8,2",
    "recurrent": "5,1,1,1,1-9,1,1,1,1-7,1,1,1,1-9,1,1,1,1",  # Rec-1, GConv-1: constant-size state
    "attention": "1,1,1,1,1-9,1,1,1,1",
    # the 45 operator genomes outside the pool, one slot each (linear attention, one-decay recurrences, ...)
    "operator-genes": "-".join(f"[{','.join(map(str, key))}],1,1,1,1" for key in composed_operator_genomes()),
    "backbone-genes": "b222:1,1,1,1,1-9,1,1,1,1-5,1,1,1,1-9,1,1,1,1",  # LayerNorm, post-norm, parallel residual
}
PROMPT, NEW = 6, 8

LOAD = (
    textwrap.dedent("""
    import json, sys
    sys.modules["starlab"] = None  # the export must not need starlab
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    root, names = sys.argv[1], sys.argv[2:]
    data, out = torch.load(f"{root}/expected.pt"), {}
    for name in names:
        model = AutoModelForCausalLM.from_pretrained(f"{root}/{name}", trust_remote_code=True)
        tokens = data[name]["tokens"]
        logits = model(tokens).logits
        generated = model.generate(tokens[:, :PROMPT], max_new_tokens=NEW, do_sample=False)
        sizes = []
        for steps in (1, NEW):  # the cache after the prompt and 1 or NEW more tokens
            result = model.generate(tokens[:, :PROMPT], max_new_tokens=steps, do_sample=False,
                                    return_dict_in_generate=True)
            sizes.append(result.cache.nbytes())
        out[name] = {
            "max_error": (logits - data[name]["logits"]).abs().max().item(),
            "generated": torch.equal(generated, data[name]["generated"]),
            "cache_bytes": sizes, "module": type(model).__module__,
        }
    tokenizer = AutoTokenizer.from_pretrained(f"{root}/{names[0]}", trust_remote_code=True)
    text = "naïve café — ok\\n"
    out["tokenizer"] = {"ids": tokenizer(text).input_ids, "decoded": tokenizer.decode(tokenizer(text).input_ids)}
    print(json.dumps(out))
""")
    .replace("PROMPT", str(PROMPT))
    .replace("NEW", str(NEW))
)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Export each genome, then load them all in a process that cannot import starlab; its findings."""
    root, expected = tmp_path_factory.mktemp("hf"), {}
    for seed, (name, text) in enumerate(GENOMES.items()):
        torch.manual_seed(seed)
        model = Backbone(Genome.parse(text), 16, 256, CONFIG)
        for parameter in model.parameters():  # off the initialisation (zero-initialised gates, unit norms)
            parameter.data.add_(0.1 * torch.randn_like(parameter))
        save_hf(model, root / name, source="test")
        tokens = torch.randint(0, 256, (2, PROMPT + 4))
        with torch.no_grad():
            expected[name] = {
                "tokens": tokens, "logits": model(tokens),
                "generated": model.generate(tokens[:, :PROMPT], NEW, temperature=0),
            }  # fmt: skip
    torch.save(expected, root / "expected.pt")
    done = subprocess.run([sys.executable, "-c", LOAD, str(root), *GENOMES], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return root, json.loads(done.stdout.strip().splitlines()[-1])


def test_the_export_is_self_contained_and_its_logits_are_starlabs(loaded):
    root, found = loaded
    for name in GENOMES:
        assert found[name]["module"].startswith("transformers_modules."), name  # loaded from the export's code
        assert found[name]["max_error"] < 1e-5, (name, found[name]["max_error"])
    assert {p.name for p in (root / "every-class").iterdir()} >= {
        "config.json", "model.safetensors", "modeling_starlab.py", "tokenizer.json", "tokenizer_config.json"
    }  # fmt: skip


def test_the_sharing_genome_really_shares():
    model = Backbone(Genome.parse(GENOMES["sharing"]), 16, 256, CONFIG)
    unshared = Backbone(Genome.parse(GENOMES["sharing"].replace(",2,", ",1,").replace(",2-", ",1-")), 16, 256, CONFIG)
    assert model.num_params() < unshared.num_params() and model.feature_source


def test_greedy_generation_is_starlabs(loaded):
    _, found = loaded
    assert all(found[name]["generated"] for name in GENOMES)


def test_the_cache_is_the_recurrent_state_constant_for_recurrences_growing_for_attention(loaded):
    _, found = loaded
    short, long = found["recurrent"]["cache_bytes"]
    assert short == long > 0  # NEW - 1 more tokens cost no memory
    short, long = found["attention"]["cache_bytes"]
    kv_per_token = 2 * 16 * 4 * 2  # K and V, width 16, fp32, batch 2
    assert long - short == (NEW - 1) * kv_per_token


def test_the_tokenizer_is_the_byte_tokenizer_the_weights_were_trained_with(loaded):
    _, found = loaded
    text = "naïve café — ok\n"
    assert found["tokenizer"]["ids"] == ByteTokenizer().encode(text).tolist()
    assert found["tokenizer"]["decoded"] == text
