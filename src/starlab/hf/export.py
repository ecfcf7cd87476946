"""Write a backbone as a Hugging Face model directory: config, weights, modelling code and tokenizer.

The directory loads offline with ``AutoModelForCausalLM.from_pretrained(OUT, trust_remote_code=True)`` and
``AutoTokenizer.from_pretrained(OUT)``, without starlab installed (:mod:`starlab.hf.vendor` copies the code).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_model

from starlab.hf.modeling import WEIGHTS, StarlabConfig
from starlab.hf.vendor import ROOT_FILE, vendor
from starlab.model import Backbone
from starlab.model.digest import architecture_metadata

#: what ``transformers``' Auto classes load from ``modeling_starlab.py``
AUTO_MAP = {
    "AutoConfig": f"{ROOT_FILE[:-3]}.StarlabConfig",
    "AutoModelForCausalLM": f"{ROOT_FILE[:-3]}.StarlabForCausalLM",
}


def save_hf(model: Backbone, directory: str | Path, tokenizer_file: Path | None = None, **metadata) -> Path:
    """Write ``model`` into ``directory`` in the Hugging Face layout; ``metadata`` goes into the config.

    ``tokenizer_file``: the ``tokenizers`` JSON of the BPE the weights were trained with; ``None`` for the
    byte-level tokenizer (one token per UTF-8 byte, id = the byte's value), which needs vocabulary 256.
    """
    if tokenizer_file is None and model.vocab_size != 256:
        raise ValueError(f"a byte-level tokenizer has 256 tokens; this model's vocabulary is {model.vocab_size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = StarlabConfig(
        **model.spec.to_json(), auto_map=AUTO_MAP, architectures=["StarlabForCausalLM"], starlab=metadata
    )
    config.save_pretrained(directory)
    save_model(model, str(directory / WEIGHTS), metadata=architecture_metadata(model))
    vendor(directory)
    save_tokenizer(directory, tokenizer_file)
    return directory


def save_tokenizer(directory: Path, tokenizer_file: Path | None) -> None:
    """``tokenizer.json`` and ``tokenizer_config.json`` for ``AutoTokenizer`` (a fast tokenizer)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer.from_file(str(tokenizer_file)) if tokenizer_file else byte_tokenizer()
    end = byte_alphabet()[0]  # id 0 (NUL): lm-eval and generate need an end-of-text token; bytes have none
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=end, pad_token=end)
    fast.save_pretrained(directory)


def byte_alphabet() -> list[str]:
    """GPT-2's byte-to-character map as a list (index = byte): printable bytes stand for themselves, the others
    for characters from U+0100 on, so every byte has a visible, distinct character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    alphabet, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            alphabet[byte] = chr(byte)
        else:
            alphabet[byte] = chr(256 + extra)
            extra += 1
    return [alphabet[byte] for byte in range(256)]


def byte_tokenizer():
    """starlab's byte tokenizer in ``tokenizers`` form: a BPE over the 256 byte characters with no merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {character: byte for byte, character in enumerate(byte_alphabet())}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer
