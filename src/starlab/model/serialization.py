"""Saving and loading models: ``config.json`` (genome and shapes) plus ``model.safetensors`` (weights).

No pickle anywhere: the config is JSON and the weights are safetensors, whose loader reads tensors only.
Shared parameters (featurizer sharing, a tied head) are stored once and re-tied on load.

An export is data from anywhere, so :func:`load` trusts none of it. Every key of ``config.json`` is checked
(type and range; the exact set of keys, no more, no fewer), the weights file's header is compared with the
model the config describes before the model is allocated (its tensors and shapes, then the digest of the
architecture that :func:`save` writes into it, which notices a changed genome or LIV setting that keeps every
shape: :mod:`starlab.model.digest`), the model's memory is checked before it is built, and the loaded weights
must be finite. Each refusal is one ``ValueError`` line naming the file and the key,
``{config_path}: 'width' must be a positive multiple of 8, got "256"``; nothing is ever written.
:func:`save` runs the same checks before it writes, so what it writes loads.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model

from starlab.errors import one_line, show
from starlab.genome import Genome
from starlab.liv import LIVConfig, check_width
from starlab.model.backbone import Backbone
from starlab.model.digest import architecture_metadata, check_architecture
from starlab.model.memory import check_device, check_spec_fits
from starlab.model.spec import BackboneSpec
from starlab.model.validation import liv_config_rules

CONFIG_FILE, WEIGHTS_FILE, FORMAT, VERSION = "config.json", "model.safetensors", "starlab-model", 1
#: the ``tokenizers`` file beside a model trained with a BPE (absent for bytes)
TOKENIZER_FILE = "tokenizer.json"
#: the keys of a version-1 config, all required, no others
KEYS = ("format", "version", "genome", "width", "vocab_size", "tie_embeddings", "max_positions", "liv_config",
        "metadata")  # fmt: skip
#: a config is a few hundred bytes plus metadata; anything larger than this is not one
MAX_CONFIG_BYTES = 16 * 2**20
#: weight dtypes a file may hold (each is converted to the model's dtype on load)
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def save(model: Backbone, directory: str | Path, tokenizer_file: Path | None = None, **metadata) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``; ``metadata`` goes into the config;
    ``tokenizer_file`` (the BPE the model was trained with, if any) is copied beside them as ``tokenizer.json``.

    Refuses (``ValueError``, nothing written) metadata that is not strict JSON and weights that are not
    finite. Both files are written next to their final names and then renamed into place.
    """
    if not isinstance(model, Backbone):
        raise ValueError(f"save() needs a Backbone, got {type(model).__name__}")
    directory = Path(directory)
    config = {"format": FORMAT, "version": VERSION, **model.spec.to_json(), "metadata": metadata}
    for key, value in metadata.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise ValueError(
                f"metadata {key!r} must be JSON (strings, finite numbers, booleans, None, lists, dicts with string "
                f"keys), got {show(value)}"
            ) from None
    text = json.dumps(config, indent=2, allow_nan=False)
    parse_config(json.loads(text), directory / CONFIG_FILE)  # what load would say; never fails for a Backbone
    model.check_finite("model")
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is a file; an exported model is a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        weights_tmp, config_tmp = directory / f".{WEIGHTS_FILE}.tmp", directory / f".{CONFIG_FILE}.tmp"
        try:
            save_model(model, str(weights_tmp), metadata=architecture_metadata(model))
            config_tmp.write_text(text + "\n", encoding="utf-8")
            os.replace(weights_tmp, directory / WEIGHTS_FILE)
            os.replace(config_tmp, directory / CONFIG_FILE)
            if tokenizer_file is not None:
                shutil.copyfile(tokenizer_file, directory / TOKENIZER_FILE)
        finally:
            for tmp in (weights_tmp, config_tmp):
                tmp.unlink(missing_ok=True)
    except OSError as error:
        raise ValueError(f"{directory}: cannot write the model ({error.strerror or error})") from None
    return directory


def load(directory: str | Path, device: str | torch.device = "cpu") -> Backbone:
    """Rebuild an exported model: ``starlab.load("out/")`` returns the :class:`Backbone` with its weights."""
    if not isinstance(directory, (str, os.PathLike)):
        raise ValueError(f"directory must be a path, got {type(directory).__name__}")
    directory = Path(directory)
    if not directory.exists():
        raise ValueError(f"{directory} does not exist")
    if not directory.is_dir():
        raise ValueError(f"{directory} is a file; an exported model is a directory of {CONFIG_FILE} and {WEIGHTS_FILE}")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.exists():
            raise ValueError(f"{directory} is not an exported starlab model (missing {path.name})")
        if not path.is_file():
            raise ValueError(f"{path} is not a file")
    device = check_device(device)
    spec = parse_config(_read_json(config_path), config_path)
    try:
        check_spec_fits(spec)  # the model the config asks for fits here (built on cpu, then moved)
        if device.type != "cpu":
            check_spec_fits(spec, device)
        with torch.device("meta"):  # shapes only: the weights file is compared before anything is allocated
            probe = Backbone.from_spec(spec)
    except ValueError as error:
        raise ValueError(f"{config_path}: {error}") from None
    except (RuntimeError, TypeError, OverflowError) as error:  # sizes beyond torch's (where memory is not known)
        raise ValueError(f"{config_path}: the model it describes cannot be built ({one_line(error)})") from None
    metadata = _check_header(weights_path, probe)
    check_architecture(probe, metadata, str(weights_path), CONFIG_FILE)  # shapes agree; does the architecture?
    try:
        model = Backbone.from_spec(spec)
    except ValueError as error:  # the memory went elsewhere since the check above
        raise ValueError(f"{config_path}: {error}") from None
    try:
        load_model(model, str(weights_path), strict=True)
    except (RuntimeError, SafetensorError, OSError) as error:
        raise ValueError(f"{weights_path}: weights do not match {CONFIG_FILE} ({one_line(error)})") from None
    model.check_finite(str(weights_path))
    return model.to(device)


def parse_config(config: Any, where: str | Path) -> BackboneSpec:
    """The architecture a parsed ``config.json`` describes; a one-line ``ValueError`` starting with ``where``
    otherwise (its keys named as the file has them, values shown as JSON)."""

    def bad(key: str, allowed: str, value: Any) -> ValueError:
        return ValueError(f"{where}: {key!r} must be {allowed}, got {show(value, json_style=True)}")

    if not isinstance(config, dict):
        raise ValueError(f"{where}: must hold a JSON object (a starlab model config), got {_json_type(config)}")
    if "format" not in config:
        raise ValueError(f"{where}: 'format' is missing (not a starlab model config?)")
    if config["format"] != FORMAT or not isinstance(config["format"], str):
        raise bad("format", repr(FORMAT), config["format"])
    if "version" not in config:
        raise ValueError(f"{where}: 'version' is missing")
    version = config["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
        raise bad("version", f"{VERSION} (the only version this starlab reads)", version)
    for key in config:
        if key not in KEYS:
            known = ", ".join(KEYS)
            raise ValueError(f"{where}: unknown key {_name(key)} (a model config holds {known})")
    for key in KEYS:
        if key not in config:
            raise ValueError(f"{where}: {key!r} is missing")

    text = config["genome"]
    if not isinstance(text, str):
        raise bad("genome", "a genome text such as '11111-91111'", text)
    try:
        genome = Genome.parse(text).validate()
    except ValueError as error:
        raise ValueError(f"{where}: 'genome' is not a valid genome ({one_line(error)})") from None
    try:
        width = check_width(config["width"])
    except ValueError:
        raise bad("width", "a positive multiple of 8", config["width"]) from None
    vocab_size = config["vocab_size"]
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
        raise bad("vocab_size", "an integer >= 2", vocab_size)
    tie_embeddings = config["tie_embeddings"]
    if not isinstance(tie_embeddings, bool):
        raise bad("tie_embeddings", "true or false", tie_embeddings)
    max_positions = config["max_positions"]
    if max_positions is not None and (
        isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 1
    ):
        raise bad("max_positions", "null or a positive integer", max_positions)
    liv_config = _parse_liv_config(config["liv_config"], where)
    if not isinstance(config["metadata"], dict):
        raise bad("metadata", "a JSON object", config["metadata"])
    return BackboneSpec(genome, width, vocab_size, liv_config, tie_embeddings, max_positions)


def _parse_liv_config(data: Any, where: str | Path) -> LIVConfig:
    rules = liv_config_rules()
    if not isinstance(data, dict):
        allowed = f"a JSON object with {', '.join(rules)}"
        raise ValueError(f"{where}: 'liv_config' must be {allowed}, got {show(data, json_style=True)}")
    for key in data:
        if key not in rules:
            raise ValueError(f"{where}: 'liv_config' has unknown key {_name(key)} (it holds {', '.join(rules)})")
    values = {}
    for name, rule in rules.items():
        if name not in data:
            raise ValueError(f"{where}: 'liv_config.{name}' is missing")
        try:
            values[name] = rule.check(data[name], json_style=True)
        except ValueError as error:
            raise ValueError(f"{where}: 'liv_config.{name}' {error}") from None
    return LIVConfig(**values)


def _read_json(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"{path}: {size:,} bytes is too large for a model config (at most {MAX_CONFIG_BYTES:,})")
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: is not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: invalid JSON ({error.msg} at line {error.lineno} column {error.colno})") from None
    except RecursionError:
        raise ValueError(f"{path}: invalid JSON (nested too deeply)") from None
    except ValueError as error:  # a duplicate key, or an integer beyond Python's digit limit
        message = str(error)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: invalid JSON ({message})") from None


def _unique_keys(path: Path):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        result = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"{path}: {_name(key)} appears twice in one object")
            result[key] = value
        return result

    return hook


def _check_header(path: Path, probe: Backbone) -> dict[str, str] | None:
    """The file holds exactly the probe's tensors (one name per shared tensor), in its shapes, as floats;
    returns the header's metadata (where :mod:`starlab.model.digest` keeps the architecture's digest)."""
    try:
        with safe_open(str(path), framework="pt") as file:
            slices = {name: file.get_slice(name) for name in file.keys()}  # noqa: SIM118 (not a dict)
            header = {name: (part.get_shape(), part.get_dtype()) for name, part in slices.items()}
            metadata = file.metadata()
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({one_line(error)})") from None
    expected = probe.state_dict(keep_vars=True)
    for name, (shape, dtype) in header.items():
        if name not in expected:
            raise ValueError(f"{path}: holds {_name(name)}, which the model of {CONFIG_FILE} has not "
                             "(weights of another genome?)")  # fmt: skip
        if list(shape) != list(expected[name].shape):
            raise ValueError(
                f"{path}: {name!r} has shape {list(shape)}, the model of {CONFIG_FILE} needs "
                f"{list(expected[name].shape)} (weights of another genome or size?)"
            )
        if dtype not in FLOAT_DTYPES:
            raise ValueError(f"{path}: {name!r} is {dtype}; weights must be floating point ({', '.join(FLOAT_DTYPES)})")
    aliases: dict[int, list[str]] = {}
    for name, tensor in expected.items():
        aliases.setdefault(id(tensor), []).append(name)
    for names in aliases.values():
        present = [name for name in names if name in header]
        if not present:
            raise ValueError(f"{path}: {names[0]!r} is missing (weights of another genome?)")
        if len(present) > 1:
            raise ValueError(f"{path}: {present[0]!r} and {present[1]!r} are one shared tensor but stored twice")
    return metadata


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _name(key: Any) -> str:
    """A key or tensor name from a file, quoted and ASCII-escaped (it may hold anything), cut at 80 characters."""
    text = ascii(key)
    return text if len(text) <= 80 else f"{text[:60]}… ({len(text)} characters)"
