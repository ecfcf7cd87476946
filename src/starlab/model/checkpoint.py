"""Saving and loading models: ``config.json`` (genome and shapes) plus ``model.safetensors`` (weights).

No pickle anywhere: the config is JSON and the weights are safetensors, whose loader reads tensors only.
Shared parameters (featurizer sharing, a tied head) are stored once and re-tied on load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from starlab.genome import Genome
from starlab.liv import LIVConfig
from starlab.model.backbone import Backbone

CONFIG_FILE, WEIGHTS_FILE, FORMAT = "config.json", "model.safetensors", "starlab-model"


def save(model: Backbone, directory: str | Path, **metadata) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``; ``metadata`` goes into the config."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "version": 1,
        "genome": model.genome.text(),
        "width": model.width,
        "vocab_size": model.vocab_size,
        "tie_embeddings": model.head is None,
        "max_positions": model.pos_embed.num_embeddings if model.pos_embed is not None else None,
        "liv_config": asdict(model.config),
        "metadata": metadata,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    save_model(model, str(directory / WEIGHTS_FILE))
    return directory


def load(directory: str | Path, device: str = "cpu") -> Backbone:
    """Rebuild an exported model: ``starlab.load("out/")`` returns the :class:`Backbone` with its weights."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{directory} is not an exported starlab model (missing {path.name})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path}: invalid JSON ({error.msg})") from None
    if config.get("format") != FORMAT:
        raise ValueError(f"{config_path}: 'format' must be {FORMAT!r}, got {config.get('format')!r}")
    known = {f.name for f in fields(LIVConfig)}
    liv_config = LIVConfig(**{k: v for k, v in config["liv_config"].items() if k in known})
    model = Backbone(
        Genome.parse(config["genome"]), config["width"], config["vocab_size"], liv_config,
        tie_embeddings=config["tie_embeddings"], max_positions=config["max_positions"],
    )  # fmt: skip
    try:
        load_model(model, str(weights_path), strict=True, device=device)
    except (RuntimeError, SafetensorError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(f"{weights_path}: weights do not match {CONFIG_FILE} ({first_line})") from None
    return model.to(device)
