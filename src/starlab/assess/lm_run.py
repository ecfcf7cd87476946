"""A language-model training run in a directory (``starlab lm ... --out DIR``), resumable after a kill.

``DIR/command.json`` is what was asked (genome, protocol and its settings, corpus, width, seed, device, how
often to checkpoint); ``DIR/checkpoints/`` holds the newest checkpoint while the run trains
(``starlab.train.checkpoint``); ``DIR/result.json`` is the report once it has finished, and the checkpoints
are then deleted. ``starlab lm --resume DIR`` reads the command back and continues: on CPU the result is
bit-identical to a run never interrupted.
"""

from __future__ import annotations

import inspect
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlab.assess.assessment import assess
from starlab.assess.protocol import Progress, get_protocol
from starlab.files import write_text_atomically
from starlab.genome import Genome, resolve
from starlab.tasks.tokenizer import DEFAULT_BPE_VOCAB
from starlab.train import Checkpointing, clear_checkpoints
from starlab.train.checkpoint import find_checkpoint

COMMAND, RESULT, CHECKPOINTS = "command.json", "result.json", "checkpoints"


#: Checkpoint every this many steps, unless told a number of steps or of minutes.
CHECKPOINT_EVERY = 100


@dataclass(frozen=True)
class LMCommand:
    """What an lm run was asked: the genome's text, the protocol and the settings changed from it (as
    ``Protocol.with_settings`` takes them), the corpus, width, seed, device and how often to checkpoint."""

    genome: str
    protocol: str
    settings: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    width: int | None = None
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None

    @classmethod
    def from_settings(
        cls, genome: str, *, depth: int | None = None, repair: bool = False, protocol: str = "lm-quick",
        data: str | None = None, width: int | None = None, seed: int = 0, device: str = "cpu",
        checkpoint_every: int | None = None, checkpoint_minutes: float | None = None, steps: int | None = None,
        seq_len: int | None = None, micro_batch: int | str | None = None, compile: bool = False,
        embedding_only: bool = False, backbone: str = "star", tokenizer: str | None = None,
        vocab_size: int | None = None,
    ) -> LMCommand:  # fmt: skip
        """A command from plain values (``starlab lm``'s flags), refused in one line now, before any run
        directory is made, if the protocol cannot take them. ``genome``: text, JSON or a preset (of ``depth``
        slots, by default the protocol's ``preset_depth``); ``micro_batch="auto"``: the largest the device holds;
        ``tokenizer="bpe"`` without a ``vocab_size`` has the default BPE vocabulary."""
        fit = micro_batch == "auto"
        given = (("steps", steps), ("seq_len", seq_len), ("micro_batch", None if fit else micro_batch),
                 ("fit_micro_batch", fit or None), ("compile", compile or None),
                 ("embedding_only", embedding_only or None),
                 ("backbone", None if backbone == "star" else backbone))  # fmt: skip
        changes = {k: v for k, v in given if v is not None}
        if tokenizer:
            changes.update(tokenizer=tokenizer, vocab_size=DEFAULT_BPE_VOCAB if tokenizer == "bpe" else None)
        if vocab_size is not None:  # the protocol refuses one its tokenizer cannot have
            changes["vocab_size"] = vocab_size
        base = get_protocol(protocol)
        base.with_data(data).with_settings(**changes)  # refused now, before any directory
        every = checkpoint_every or (None if checkpoint_minutes else CHECKPOINT_EVERY)
        text = resolve(genome, depth, repair=repair, default_depth=base.preset_depth).text()
        return cls(text, protocol, changes, data, width, seed, device, every, checkpoint_minutes)

    def conflicts(self, **given: Any) -> dict[str, tuple[Any, Any]]:
        """The values in ``given`` (keywords of :meth:`from_settings`; those equal to its defaults count as not
        given) that differ from this command's, each as ``(given, this command's)``: a resumed run continues
        as it was stored and ignores them, and its caller says so."""
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"LMCommand.conflicts() got unexpected settings {', '.join(unknown)}")
        stored = {"protocol": self.protocol, "data": self.data, "width": self.width, "seed": self.seed,
                  "device": self.device, "checkpoint_every": self.checkpoint_every,
                  "checkpoint_minutes": self.checkpoint_minutes, **self.settings}  # fmt: skip
        given = {name: value for name, value in given.items() if value != DEFAULTS[name]}
        if given.get("micro_batch") == "auto" and self.settings.get("fit_micro_batch"):
            del given["micro_batch"]  # stored as fit_micro_batch
        return {name: (value, stored.get(name)) for name, value in given.items() if value != stored.get(name)}


#: The settings of :meth:`LMCommand.from_settings` besides the genome's, and each one's value when not given.
DEFAULTS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in inspect.signature(LMCommand.from_settings).parameters.items()
    if name not in ("genome", "depth", "repair")
}


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
    report = protocol.describe(result)
    if directory is not None:
        write_text_atomically(directory / RESULT, json.dumps(report, indent=2))
        clear_checkpoints(directory / CHECKPOINTS)
    return report
