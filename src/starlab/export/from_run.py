"""Export a genome of a run's Pareto front as a model anyone can load with ``starlab.load``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from starlab.assess import get_protocol
from starlab.assess.assessment import check_seed
from starlab.errors import Setting, SettingError
from starlab.evolve.weights import kept_weights
from starlab.genome import Genome
from starlab.liv import LIVConfig
from starlab.model import Backbone, check_model_fits
from starlab.model.serialization import CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, load, save
from starlab.store import load_run
from starlab.tasks.lm import lm_task
from starlab.train import TrainConfig, train

#: what ``starlab export --format`` writes
EXPORT_FORMATS = ("starlab", "hf")
#: the vocabulary of a model trained or exported untrained here (byte-level), unless ``vocab_size`` says otherwise
BYTE_VOCAB = 256


def export_from_run(
    directory: str | Path,
    rank: int,
    out: str | Path,
    vocab_size: int | None = None,
    train_steps: int = 0,
    data: str | None = None,
    seed: int = 0,
    force: bool = False,
    format: str = "starlab",
    untrained: bool = False,
) -> Path:
    """Write the ``rank``-th genome of the run's Pareto front (over all its evaluations: the report's front
    table) as a model: ``config.json`` + ``model.safetensors`` for ``starlab.load`` (``format="starlab"``), or
    a Hugging Face directory with its modelling code and tokenizer (``format="hf"``, :mod:`starlab.hf`).

    Rank 1 is the best quality on the front. The weights are, in this order: the trained model the run kept
    for that genome (language-model protocols keep those of the front, :mod:`starlab.evolve.weights`); a
    byte-level language model trained here for ``train_steps`` (on ``data`` or the bundled corpus); or, only
    when asked for with ``untrained``, the seeded initialisation. An export is never passed off as trained
    when it is not: the config records whether it was, how, and where it came from.
    """
    _check_arguments(format, train_steps, untrained, seed, out, data, vocab_size, force)
    run = load_run(directory)
    member = _member(run, rank)
    rungs, run_seed = run.config["ladder"] or [run.config["protocol"]], run.config["seed"]
    kept = None if train_steps or untrained else kept_weights(Path(directory), member["hash"], rungs, run_seed)
    if kept is None and not train_steps and not untrained:
        raise SettingError(
            "rank {0} has no trained weights in the run (language-model protocols keep them for the front); "
            "train it here with {1:=}N (and {2}), or export its initial weights with {3}",
            rank, Setting("train_steps"), Setting("data"), Setting("untrained"),
        )  # fmt: skip
    if kept is not None and vocab_size is not None:
        raise SettingError("{0} sets the vocabulary of initial weights; rank {1} exports the trained weights the run "
                           "kept, with the vocabulary they were trained with: leave {0} out, or add {2}",
                           Setting("vocab"), rank, Setting("untrained"))  # fmt: skip
    model, how = _weights(run, member, kept, train_steps, data, seed, vocab_size or BYTE_VOCAB)
    objectives = {name: member[name] for name in run.config["objectives"]}
    metadata = {"source": str(Path(directory).resolve()), "rank": rank, "objectives": objectives, **how}
    tokenizer = kept / TOKENIZER_FILE if kept is not None and (kept / TOKENIZER_FILE).is_file() else None
    if format == "hf":
        from starlab.hf.export import save_hf  # needs the hf extra (transformers)

        return save_hf(model, out, tokenizer_file=tokenizer, **metadata)
    return save(model, out, tokenizer_file=tokenizer, **metadata)


def _check_arguments(
    format: str, train_steps: int, untrained: bool, seed: int, out: str | Path, data: str | None,
    vocab_size: int | None, force: bool,
) -> None:  # fmt: skip
    """Refuse a bad combination in one line before the run is read."""
    if format not in EXPORT_FORMATS:
        raise SettingError("{0} must be one of {1}, got {2!r}", Setting("format"), ", ".join(EXPORT_FORMATS), format)
    if isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 0:
        template = "{0} must be an integer >= 0 (0: the initial weights), got {1!r}"
        raise SettingError(template, Setting("train_steps"), train_steps)
    if train_steps and untrained:
        raise SettingError("{0} and {1} contradict each other; give one", Setting("train_steps"), Setting("untrained"))
    check_seed(seed)
    if isinstance(out, str) and not out.strip():  # Path("") is the current directory
        raise SettingError("{0} is empty; name the directory to export into", Setting("out"))
    if data is not None and not train_steps:
        raise SettingError("{0} is the corpus for {1}; without training it would be ignored",
                           Setting("data"), Setting("train_steps"))  # fmt: skip
    if (train_steps or (untrained and format == "hf")) and vocab_size not in (None, BYTE_VOCAB):
        raise SettingError("a model trained or exported here is byte-level: {0} 256, got {1}",
                           Setting("vocab"), vocab_size)  # fmt: skip
    if not force and any((Path(out) / name).exists() for name in (CONFIG_FILE, WEIGHTS_FILE)):
        template = "{0} already holds an exported model; choose another {1} or pass {2} to overwrite it"
        raise SettingError(template, out, Setting("out"), Setting("force"))


def _member(run, rank: int) -> dict:
    front = run.front
    if not 1 <= rank <= len(front):
        template = "{0} must be in 1..{1} (the size of the Pareto front), got {2}"
        raise SettingError(template, Setting("rank"), len(front), rank)
    return front[rank - 1]


def _weights(run, member: dict, kept: Path | None, train_steps: int, data: str | None, seed: int, vocab_size: int):
    """The model to export and how its weights came about (for the config's metadata)."""
    if kept is not None:
        model = load(kept)
        trained_by = json.loads((kept / CONFIG_FILE).read_text())["metadata"]
        return model, {"trained": True, "weights": "kept by the run", **trained_by}
    protocol = get_protocol(run.config["protocol"])
    width = run.config.get("width") or protocol.width
    genome = Genome.parse(member["genome"])
    torch.manual_seed(seed)
    if train_steps:
        model, perplexity = _train_language_model(genome, width, protocol.config, train_steps, data, seed)
        return model, {"trained": True, "weights": "trained by export", "train_steps": train_steps,
                       "perplexity": perplexity, "protocol": run.config["protocol"]}  # fmt: skip
    model = Backbone(genome, width, vocab_size, protocol.config)
    return model, {"trained": False, "weights": "initial (untrained)", "protocol": run.config["protocol"]}


def _train_language_model(genome: Genome, width: int, liv_config: LIVConfig, steps: int, data: str | None, seed: int):
    task = lm_task(data, seq_len=128)
    try:  # weights, gradients and AdamW's moments, before the model is built and trained
        check_model_fits(genome, width, task.vocab_size, config=liv_config, training=True)
    except ValueError as error:
        raise SettingError("{0}; export it untrained (without {1})", str(error), Setting("train_steps")) from None
    model = Backbone(genome, width, task.vocab_size, liv_config)
    config = TrainConfig(lr=3e-3, max_steps=steps, batch_size=16, warmup_steps=steps // 10, min_lr=3e-4, seed=seed)
    result = train(model, task, config)
    perplexity = result.metrics.get("perplexity")
    # config.json is strict JSON (no NaN or Infinity): a perplexity that is not a finite number is not recorded
    finite = isinstance(perplexity, (int, float)) and math.isfinite(perplexity)
    return model, perplexity if finite else None
