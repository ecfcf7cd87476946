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
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from starlab.files import write_text_atomically

LATEST = "latest.json"


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
    save_model(model, str(partial / "model.safetensors"))
    optimizer_state = optimizer.state_dict()
    tensors = {f"state.{index}.{key}": value.contiguous() for index, entries in optimizer_state["state"].items()
               for key, value in entries.items()}  # fmt: skip
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_file(tensors, str(partial / "optimizer.safetensors"))
    meta = {"step": state.step, "loss": state.loss, "seconds": state.seconds, "history": state.history,
            "param_groups": optimizer_state["param_groups"]}  # fmt: skip
    (partial / "state.json").write_text(json.dumps(meta))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    write_text_atomically(directory / LATEST, json.dumps({"checkpoint": name}))
    for old in directory.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainingState | None:
    """Restore the newest complete checkpoint into ``model`` and ``optimizer`` (and the random states);
    ``None`` when there is none yet."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    where = directory / json.loads(pointer.read_text())["checkpoint"]
    try:
        load_model(model, str(where / "model.safetensors"), device=str(next(model.parameters()).device))
        tensors = load_file(str(where / "optimizer.safetensors"))
        meta = json.loads((where / "state.json").read_text())
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"{where}: not a readable starlab training checkpoint ({error})") from None
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    return TrainingState(meta["step"], meta["loss"], meta["seconds"], meta["history"])


def clear_checkpoints(directory: Path) -> None:
    """Remove a finished run's checkpoints (its result is what remains)."""
    (directory / LATEST).unlink(missing_ok=True)
    for old in directory.glob("step-*"):
        shutil.rmtree(old, ignore_errors=True)
