"""Checkpoints of one training run, so that a killed or pre-empted run continues where it stopped.

A checkpoint is a directory ``step-N/`` holding ``model.safetensors`` (shared tensors once),
``optimizer.safetensors`` (AdamW's moments and step counts, and the torch random states) and ``state.json``
(the step, the evaluation history, the optimizer's hyperparameters, the seconds trained). No pickle: tensors
are safetensors, everything else JSON. ``latest.json`` names the newest complete checkpoint and is replaced
atomically after the checkpoint is fully written, so a crash while writing leaves the previous one in force.
The data stream is not stored: a resumed run draws and drops the batches it already trained on, which
replays any task's stream exactly and costs little next to training on them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from starlab.errors import one_line, show
from starlab.files import write_text_atomically

LATEST = "latest.json"
MODEL_FILE, OPTIMIZER_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "state.json"
#: the names ``latest.json`` may point at: a checkpoint folder of the same directory, nothing else
STEP_FOLDER = re.compile(r"step-(0|[1-9][0-9]{0,17})")
#: the pointer is one short object; ``state.json`` grows with the evaluations (a few hundred bytes each)
MAX_POINTER_BYTES, MAX_STATE_BYTES = 4096, 256 * 2**20


#: the folder of a run's directory that holds its final model (``keep_final``)
FINAL = "final"


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a run checkpoints: every ``every_steps`` steps and/or ``every_seconds`` seconds.

    ``keep_final``: the protocol also writes the trained model into ``directory / FINAL`` (an export a search
    keeps for the genomes on its front, so that ``starlab export`` gives trained weights).
    """

    directory: Path
    every_steps: int | None = None
    every_seconds: float | None = None
    keep_final: bool = False

    def __post_init__(self) -> None:
        if self.every_steps is not None and (isinstance(self.every_steps, bool) or self.every_steps < 1):
            raise ValueError(f"checkpoint every_steps must be a positive integer, got {self.every_steps!r}")
        if self.every_seconds is not None and not self.every_seconds > 0:
            raise ValueError(f"checkpoint every_seconds must be positive, got {self.every_seconds!r}")

    def due(self, step: int, since_last_s: float) -> bool:
        by_steps = self.every_steps is not None and step % self.every_steps == 0
        return by_steps or (self.every_seconds is not None and since_last_s >= self.every_seconds)


@dataclass
class TrainingState:
    """What a run needs besides its model and optimizer to continue bit-identically."""

    step: int
    loss: float
    seconds: float
    history: list[dict[str, float]]


def save_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState) -> None:
    """Write ``step-N/`` completely, then point ``latest.json`` at it, then delete older checkpoints."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step}"
    target, partial = directory / name, directory / f"{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_model(model, str(partial / MODEL_FILE))
    optimizer_state = optimizer.state_dict()
    tensors = {f"state.{index}.{key}": value.contiguous() for index, entries in optimizer_state["state"].items()
               for key, value in entries.items()}  # fmt: skip
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(tensors, str(partial / OPTIMIZER_FILE))
    meta = {"step": state.step, "loss": state.loss, "seconds": state.seconds, "history": state.history,
            "param_groups": optimizer_state["param_groups"]}  # fmt: skip
    (partial / STATE_FILE).write_text(json.dumps(meta))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    write_text_atomically(directory / LATEST, json.dumps({"checkpoint": name}))
    for old in directory.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, max_steps: int | None = None
) -> TrainingState | None:
    """Restore the newest complete checkpoint into ``model`` and ``optimizer`` (and the random states);
    ``None`` when there is none yet.

    A checkpoint is a file on disk that anything may have changed, so every part is checked before any of it
    is used, and a bad one is one ``ValueError`` naming the file: a step that would make the run replay a
    billion batches, an optimizer moment of another shape, a torn file. ``max_steps``: the run's length; a
    checkpoint past it is refused (a run cannot go back)."""
    found = find_checkpoint(directory, max_steps)
    if found is None:
        return None
    model_file, optimizer_file = found.where / MODEL_FILE, found.where / OPTIMIZER_FILE
    tensors = _read_tensors(optimizer_file)
    state = _optimizer_state(tensors, optimizer, optimizer_file)
    groups = _param_groups(found.meta["param_groups"], optimizer, found.where / STATE_FILE)
    _check_rng(tensors, optimizer_file)
    try:
        load_model(model, str(model_file), device=str(next(model.parameters()).device))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:
        raise ValueError(f"{model_file}: does not fit this run's model ({one_line(error)})") from None
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as error:
        raise ValueError(f"{found.where / STATE_FILE}: does not fit this run's optimizer ({one_line(error)})") from None
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    meta = found.meta
    return TrainingState(meta["step"], float(meta["loss"]), float(meta["seconds"]), meta["history"])


@dataclass(frozen=True)
class FoundCheckpoint:
    """The folder ``latest.json`` names and its checked ``state.json``."""

    where: Path
    meta: dict[str, Any]


def find_checkpoint(directory: Path, max_steps: int | None = None) -> FoundCheckpoint | None:
    """The newest checkpoint, checked as far as it can be without the model: the pointer names a ``step-N``
    folder inside ``directory``, ``state.json`` holds what a resumed run reads (types and ranges), both
    safetensors files open, and the step is at most ``max_steps``. ``None`` when there is no checkpoint;
    a ``ValueError`` naming the file otherwise. Cheap: callers run it before any training starts."""
    pointer = directory / LATEST
    if not pointer.exists() and not pointer.is_symlink():
        return None
    data = _read_json(pointer, MAX_POINTER_BYTES)
    name = data.get("checkpoint") if isinstance(data, dict) else None
    if not isinstance(name, str) or not STEP_FOLDER.fullmatch(name):
        raise ValueError(f"{pointer}: must be {{\"checkpoint\": \"step-N\"}} naming a checkpoint folder of "
                         f"{directory}, got {_show(data)}")  # fmt: skip
    where = directory / name
    if where.is_symlink() or not where.is_dir():
        raise ValueError(f"{pointer}: names {name}, which is not a checkpoint folder in {directory}")
    meta = _check_state(_read_json(where / STATE_FILE, MAX_STATE_BYTES), where / STATE_FILE, int(name[5:]))
    for file in (MODEL_FILE, OPTIMIZER_FILE):
        _read_header(where / file)
    if max_steps is not None and meta["step"] > max_steps:
        raise ValueError(f"{where / STATE_FILE}: the checkpoint is at step {meta['step']}, past the run's "
                         f"{max_steps} steps (a run cannot go back below its checkpoint's step)")  # fmt: skip
    return FoundCheckpoint(where, meta)


def _read_json(path: Path, limit: int) -> Any:
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"{path}: missing or not a plain file")
    try:
        if (size := path.stat().st_size) > limit:
            raise ValueError(f"{path}: {size:,} bytes, more than a checkpoint's {limit:,}")
        return json.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, an integer of 5000 digits
        message = one_line(error)
        raise ValueError(message if message.startswith(str(path)) else f"{path}: not JSON ({message})") from None


def _check_state(meta: Any, path: Path, folder_step: int) -> dict[str, Any]:
    """``state.json``'s fields, each of the type a resumed run needs; its step is its folder's."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: must hold a JSON object, got {_show(meta)}")
    for key in ("step", "loss", "seconds", "history", "param_groups"):
        if key not in meta:
            raise ValueError(f"{path}: {key!r} is missing")
    step = meta["step"]
    if not _is_int(step) or step != folder_step:
        raise ValueError(f"{path}: 'step' must be {folder_step} (its folder is step-{folder_step}), got {_show(step)}")
    if not _is_number(meta["loss"]):
        raise ValueError(f"{path}: 'loss' must be a number, got {_show(meta['loss'])}")
    seconds = meta["seconds"]
    if not _is_number(seconds) or not 0 <= seconds < math.inf:
        raise ValueError(f"{path}: 'seconds' must be a finite number >= 0, got {_show(seconds)}")
    history = meta["history"]
    entries_ok = isinstance(history, list) and all(
        isinstance(h, dict) and {"step", "score"} <= h.keys() and all(_is_number(v) for v in h.values())
        for h in history
    )
    if not entries_ok:
        raise ValueError(f"{path}: 'history' must be a list of evaluations (objects of numbers with 'step' and "
                         f"'score'), got {_show(history)}")  # fmt: skip
    groups = meta["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError(f"{path}: 'param_groups' must be a list of objects, got {_show(groups)}")
    return meta


def _read_header(path: Path) -> None:
    """Opening a safetensors file reads its header and checks that the file holds every byte it names."""
    if path.is_symlink() or not path.is_file():
        raise ValueError(f"{path}: missing or not a plain file")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (OSError, SafetensorError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({one_line(error)})") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({one_line(error)})") from None


#: what AdamW keeps per parameter (``max_exp_avg_sq`` too with ``amsgrad``)
ADAMW_STATE = ("step", "exp_avg", "exp_avg_sq")


def _optimizer_state(
    tensors: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, path: Path
) -> dict[int, dict[str, torch.Tensor]]:
    """The optimizer's per-parameter state from ``optimizer.safetensors``: each index one of the optimizer's
    parameters, each moment in its parameter's shape (AdamW adds a moment of another shape to a parameter
    without complaint, and the run then fails deep inside a step)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    amsgrad = any(group.get("amsgrad") for group in optimizer.param_groups)
    expected = {*ADAMW_STATE, "max_exp_avg_sq"} if amsgrad else set(ADAMW_STATE)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key == "rng.cpu" or re.fullmatch(r"rng\.cuda\.\d{1,4}", key):
            continue
        match = re.fullmatch(r"state\.(\d{1,9})\.(\w+)", key)
        if match is None or int(match[1]) >= len(params) or match[2] not in expected:
            raise ValueError(f"{path}: holds {_show(key)}, not a tensor of this run's optimizer "
                             f"({len(params)} parameters, each with {', '.join(sorted(expected))})")  # fmt: skip
        index, name = int(match[1]), match[2]
        shape = [] if name == "step" else list(params[index].shape)
        if list(value.shape) != shape or not value.is_floating_point():
            raise ValueError(f"{path}: {key!r} is a {value.dtype} tensor of shape {list(value.shape)}; "
                             f"this run's optimizer needs floats of shape {shape}")  # fmt: skip
        if not bool(torch.isfinite(value).all()) or (name == "step" and float(value) < 0):
            raise ValueError(f"{path}: {key!r} holds values that are not finite (or a negative step)")
        state.setdefault(index, {})[name] = value
    for index, entries in state.items():
        if missing := expected - entries.keys():
            raise ValueError(f"{path}: 'state.{index}.{sorted(missing)[0]}' is missing")
    return state


def _param_groups(groups: list[dict[str, Any]], optimizer: torch.optim.Optimizer, path: Path) -> list[dict[str, Any]]:
    """``state.json``'s parameter groups, checked against the optimizer's own: the same groups of the same
    parameters, and each hyperparameter of the type the optimizer has (a string ``lr`` fails only in a step)."""
    own = optimizer.state_dict()["param_groups"]
    if len(groups) != len(own):
        raise ValueError(f"{path}: 'param_groups' has {len(groups)} groups; this run's optimizer has {len(own)}")
    for number, (group, mine) in enumerate(zip(groups, own, strict=True)):
        if group.get("params") != mine["params"]:
            raise ValueError(f"{path}: 'param_groups' group {number} must hold parameters {mine['params']}, "
                             f"got {_show(group.get('params'))}")  # fmt: skip
        for key in ("lr", "betas", "eps", "weight_decay"):
            if key not in group:
                raise ValueError(f"{path}: 'param_groups' group {number} lacks {key!r}")
        for key, value in group.items():
            if key in mine and key != "params" and not _same_kind(value, mine[key]):
                raise ValueError(f"{path}: 'param_groups' group {number}: {key!r} must be like {_show(mine[key])}, "
                                 f"got {_show(value)}")  # fmt: skip
    return groups


def _check_rng(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """The random states: bytes, of the size torch's generators have (torch refuses others with a traceback)."""
    if "rng.cpu" not in tensors:
        raise ValueError(f"{path}: 'rng.cpu' (the random state) is missing")
    for key, value in tensors.items():
        if key.startswith("rng."):
            size = torch.get_rng_state().shape if key == "rng.cpu" else value.shape
            if value.dtype != torch.uint8 or value.dim() != 1 or value.shape != size:
                raise ValueError(f"{path}: {key!r} is not a random state ({value.dtype}, shape {list(value.shape)})")


def _same_kind(value: Any, mine: Any) -> bool:
    """JSON ``value`` can stand for ``mine``: numbers (finite) for numbers, booleans or null for booleans or
    null, sequences of the same length and kinds."""
    if isinstance(mine, bool) or mine is None:
        return isinstance(value, bool) or value is None
    if _is_number(mine):
        return _is_number(value) and math.isfinite(value)
    if isinstance(mine, (list, tuple)):
        return (isinstance(value, list) and len(value) == len(mine)
                and all(_same_kind(v, m) for v, m in zip(value, mine, strict=True)))  # fmt: skip
    return type(value) is type(mine)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value read from a file, as JSON, cut at 80 characters."""
    return show(value, json_style=True, limit=80)


def clear_checkpoints(directory: Path) -> None:
    """Remove a finished run's checkpoints (its result is what remains)."""
    (directory / LATEST).unlink(missing_ok=True)
    for old in directory.glob("step-*"):
        shutil.rmtree(old, ignore_errors=True)
