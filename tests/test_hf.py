"""Hugging Face export: a directory ``transformers`` loads with ``trust_remote_code`` where starlab is not
importable, whose logits are starlab's for every LIV class, every operator genome outside the pool, backbone
genes and both kinds of sharing, whose ``generate`` is starlab's greedy decoding, and whose cache is the
recurrent state (constant for recurrences and short convolutions, growing for attention, a feature group's
held once).

The loading side runs in one subprocess with ``starlab`` blocked from import, so the exported code cannot
lean on the installed package.
"""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

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


def edit_config(**values):
    def change(directory):
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, **values}))

    return change


def edit_liv(**values):
    def change(directory):
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "liv_config": {**config["liv_config"], **values}}))

    return change


def edit_weights(change_tensors, metadata=True):
    """Rewrite the weights, changed by ``change_tensors``, keeping the digest (``metadata``) or dropping it."""

    def change(directory):
        path = directory / "model.safetensors"
        with safe_open(str(path), framework="pt") as file:
            stored = file.metadata() if metadata else None
        tensors = load_file(str(path))
        change_tensors(tensors)
        save_file(tensors, str(path), metadata=stored)

    return change


def nan_in_embedding(tensors):
    tensors["embed.weight"][0, 0] = float("nan")


def cut_weights(keep):
    def change(directory):
        path = directory / "model.safetensors"
        path.write_bytes(path.read_bytes()[:keep])

    return change


#: tampered copies of the "attention" export, each loaded by the exported code in the subprocess too
TAMPERED = {
    "tampered-genome": edit_config(genome="b112:1,1,1,1,1-9,1,1,1,1"),  # a parallel residual: the same tensors
    "tampered-nan": edit_weights(nan_in_embedding),
}
#: (tampering of an export, what the one-line error says) for StarlabForCausalLM.from_pretrained
TAMPERINGS = {
    **{name: (change, None) for name, change in TAMPERED.items()},
    "rope-base": (edit_liv(rope_base=500_000.0), "saved for another architecture than"),
    "heads": (edit_liv(heads=4), "saved for another architecture than"),
    "torn-weights": (cut_weights(-10), "model.safetensors: not a readable safetensors file"),
    "empty-weights": (cut_weights(0), "model.safetensors: not a readable safetensors file"),
    "no-weights": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors: not a readable safetensors file"),
    "old-export-other-shapes": (edit_weights(lambda t: t.update({"embed.weight": torch.zeros(256, 8)}), False),
                                "model.safetensors: the weights do not match config.json"),
    "config-torn": (lambda d: (d / "config.json").write_text('{"genome": '), "config.json: not JSON"),
    "config-genome-bad": (edit_config(genome="99999"), "config.json: not a starlab model config"),
}  # fmt: skip
TAMPERED_SAYS = {"tampered-genome": "saved for another architecture than", "tampered-nan": "holds 1 NaN or infinite"}

LOAD = (
    textwrap.dedent("""
    import json, sys
    sys.modules["starlab"] = None  # the export must not need starlab
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    root, names = sys.argv[1], sys.argv[2:]
    data, out = torch.load(f"{root}/expected.pt"), {}
    for name in names:
        if name.startswith("tampered-"):  # must be refused by the exported code: what it says
            try:
                AutoModelForCausalLM.from_pretrained(f"{root}/{name}", trust_remote_code=True)
                out[name] = "loaded"
            except Exception as error:
                out[name] = f"{type(error).__name__}: {error}"
            continue
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
    for name, change in TAMPERED.items():
        shutil.copytree(root / "attention", root / name)
        change(root / name)
    done = subprocess.run([sys.executable, "-c", LOAD, str(root), *GENOMES, *TAMPERED], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
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


@pytest.mark.parametrize("name", TAMPERINGS)
def test_from_pretrained_refuses_a_tampered_export_in_one_line_naming_the_file(tmp_path, name):
    """A config whose genome or LIV settings differ from the weights' (the digest saved with them), weights
    that are not finite, torn or missing files: one ``ValueError`` naming the file, never a silent other model
    or a safetensors/torch traceback."""
    from starlab.hf.modeling import StarlabForCausalLM

    torch.manual_seed(0)
    directory = save_hf(Backbone(Genome.parse(GENOMES["attention"]), 16, 256, CONFIG), tmp_path / "model")
    change, expected = TAMPERINGS[name]
    change(directory)
    with pytest.raises(ValueError) as info:
        StarlabForCausalLM.from_pretrained(directory)
    message = str(info.value)
    assert (expected or TAMPERED_SAYS[name]) in message and "\n" not in message, message
    assert message.startswith(str(directory)), message


def test_the_exported_code_refuses_a_tampered_export_too(loaded):
    _, found = loaded
    for name, says in TAMPERED_SAYS.items():
        assert found[name].startswith("ValueError: ") and says in found[name] and "\n" not in found[name], found[name]
