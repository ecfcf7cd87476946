"""A language-model training run in a directory (``starlab lm ... --out DIR``), resumable after a kill.

``DIR/command.json`` is what was asked (genome, protocol and its settings, corpus, width, seed, device, how
often to checkpoint); ``DIR/checkpoints/`` holds the newest checkpoint while the run trains
(``starlab.train.checkpoint``); ``DIR/result.json`` is the report once it has finished, and the checkpoints
are then deleted. ``starlab lm --resume DIR`` reads the command back and continues: on CPU the result is
bit-identical to a run never interrupted.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlab.assess.assessment import assess
from starlab.assess.protocol import Progress, get_protocol
from starlab.files import write_text_atomically
from starlab.genome import Genome
from starlab.train import Checkpointing, clear_checkpoints
from starlab.train.checkpoint import find_checkpoint

COMMAND, RESULT, CHECKPOINTS = "command.json", "result.json", "checkpoints"


@dataclass(frozen=True)
class LMCommand:
    genome: str
    protocol: str
    settings: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    width: int | None = None
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None


def start(directory: Path, command: LMCommand) -> None:
    """Create ``directory`` for ``command``; one that already holds a run is refused (resume it instead), and
    so is a path that cannot be a directory we write: refused here, before any training, and with nothing left
    behind (the folders this made are removed again)."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory} is a file; an lm run's --out is a directory (a new or empty one)")
    if (directory / COMMAND).exists():
        raise ValueError(f"{directory} holds an lm run already: continue it with --resume {directory}")
    made = next((p for p in reversed([directory, *directory.parents]) if not p.exists()), None)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomically(directory / COMMAND, json.dumps(asdict(command), indent=2))
    except OSError as error:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise ValueError(f"{directory}: cannot write an lm run there ({error.strerror or error})") from None


def read(directory: Path) -> LMCommand:
    try:
        return LMCommand(**json.loads((directory / COMMAND).read_text()))
    except (FileNotFoundError, NotADirectoryError):
        raise ValueError(f"{directory}: no starlab lm run here (no {COMMAND})") from None
    except OSError as error:
        raise ValueError(f"{directory / COMMAND}: cannot be read ({error.strerror or error})") from None
    except (ValueError, TypeError) as error:
        raise ValueError(f"{directory / COMMAND}: unreadable ({error})") from None


def run(directory: Path | None, command: LMCommand, progress: Progress | None = None) -> dict[str, Any]:
    """Train (continuing from the newest checkpoint in ``directory``, if any) and report; a finished run's
    stored report is returned as it is."""
    if directory is not None and (directory / RESULT).is_file():
        return json.loads((directory / RESULT).read_text())
    protocol = get_protocol(command.protocol).with_data(command.data).with_settings(**command.settings)
    checkpointing = None
    if directory is not None:
        minutes = command.checkpoint_minutes
        checkpointing = Checkpointing(directory / CHECKPOINTS, command.checkpoint_every, minutes and minutes * 60)
        find_checkpoint(checkpointing.directory, protocol.steps)  # a tampered or torn one: refused before training
    result = assess(Genome.parse(command.genome), protocol, command.width, command.seed, command.device,
                    progress=progress, checkpointing=checkpointing)  # fmt: skip
    report = {
        "genome": result.genome, "protocol": command.protocol, "perplexity": result.quality, "status": result.status,
        "params": result.params, "cache_bytes": result.cache_bytes, "seconds": result.seconds,
        "width": result.width, **result.metrics,
    }  # fmt: skip
    if directory is not None:
        write_text_atomically(directory / RESULT, json.dumps(report, indent=2))
        clear_checkpoints(directory / CHECKPOINTS)
    return report
