"""Language-modelling protocols (lm-quick, lm-tiny, lm-small, lm-demo, lm-paper): quality = validation perplexity."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch

from starlab import runtime
from starlab.assess.protocol import (
    NON_NEGATIVE,
    POSITIVE,
    Outcome,
    Progress,
    Protocol,
    Range,
    register_protocol,
    step_reporter,
)
from starlab.assess.record import Evaluation
from starlab.errors import Setting, SettingError
from starlab.genome import Genome
from starlab.model import FLAVOURS, Backbone, BackboneSpec, get_flavour, training_flops_per_token
from starlab.model.serialization import save
from starlab.status import Status
from starlab.tasks.lm import LMTask, lm_task, open_corpus
from starlab.tasks.tokenizer import BPETokenizer, resolve_vocab_size
from starlab.train import Checkpointing, TrainConfig, TrainResult, train
from starlab.train.checkpoint import FINAL


@dataclass(frozen=True, kw_only=True, eq=False)
class LMProtocol(Protocol):
    """Next-token training on text (default: the bundled smoke corpus); quality = validation perplexity.

    ``data`` is a local corpus (file, directory, jsonl, parquet); a search passes its corpus here.
    ``requires_data`` protocols refuse the bundled smoke corpus: their budget only makes sense on real text.
    """

    kind: ClassVar[str] = "lm"
    quality_meaning: ClassVar[str] = "validation perplexity"
    RANGES: ClassVar[dict[str, Range]] = {
        "seq_len": POSITIVE, "steps": POSITIVE, "batch_size": POSITIVE, "lr": Range(0, open_low=True),
        "warmup_steps": NON_NEGATIVE, "weight_decay": Range(0), "max_eval_tokens": POSITIVE,
        "checkpoint_every": POSITIVE, "checkpoint_minutes": Range(0, open_low=True),
    }  # fmt: skip
    width: int
    seq_len: int
    steps: int
    batch_size: int
    #: sequences per forward/backward pass, gradients accumulated up to ``batch_size`` (``None``: all at once)
    micro_batch: int | None = None
    #: on running out of device memory, lower the micro-batch to the next divisor of the batch and redo the step
    fit_micro_batch: bool = False
    #: train only the token embedding and an untied unembedding; every LIV and norm keeps its random
    #: initialisation (the random-transformer setting of Zhong & Andreas, on language modelling)
    embedding_only: bool = False
    #: the flavour the genome is built in: ``star`` or ``gpt2`` (learned positions over ``seq_len``, untied
    #: head; ``starlab.model.flavours``)
    backbone: str = "star"
    #: train through ``torch.compile`` (worth it for long GPU runs; compiling costs tens of seconds)
    compile: bool = False
    #: in a search, checkpoint every this many steps and/or minutes, so that a retried evaluation continues
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = 10.0
    lr: float = 3e-3
    warmup_steps: int = 0
    weight_decay: float = 0.1
    tokenizer: str = "byte"
    vocab_size: int | None = None
    max_eval_tokens: int = 1 << 16
    data: str | None = None
    requires_data: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone not in FLAVOURS:
            self._refuse("backbone", f"one of {', '.join(FLAVOURS)}", self.backbone)
        try:
            resolve_vocab_size(self.tokenizer, self.vocab_size)
        except ValueError as error:
            raise ValueError(f"protocol {self.name!r}: {error}") from None
        if self.micro_batch is not None and (
            isinstance(self.micro_batch, bool) or not isinstance(self.micro_batch, int)
            or self.micro_batch < 1 or self.batch_size % self.micro_batch
        ):  # fmt: skip
            raise SettingError(
                "protocol {0!r}: {1} must be a positive divisor of the batch size {2}, got {3!r}",
                self.name, Setting("micro_batch"), self.batch_size, self.micro_batch,
            )  # fmt: skip
        if self.data is not None:
            open_corpus(self.data)  # a missing path or unknown format fails now, before any training

    @property
    def vocab_bound(self) -> int:
        return self.vocab_size or 256

    def check_ready(self) -> None:
        """Read, split and tokenize the corpus now (cached for the assessments), so that a corpus too small or
        empty for this protocol is refused before a search starts rather than failing every evaluation."""
        lm_task(self.data, self.seq_len, self.tokenizer, self.vocab_size, max_eval_tokens=self.max_eval_tokens)

    @property
    def worst_quality(self) -> float:
        """The perplexity of a uniform guess over the vocabulary."""
        return float(self.vocab_size or 256)

    def with_data(self, data: str | None) -> LMProtocol:
        if data is None and self.data is None and self.requires_data:
            raise SettingError(
                "the {0} protocol trains on a real corpus: give one with {1:=}PATH", self.name, Setting("data")
            )
        if data is None:
            return self
        open_corpus(data)  # a missing path or unknown format fails now, before any training or run directory
        return replace(self, data=data)

    def run(
        self, genome: Genome, width: int, seed: int, device: torch.device, progress: Progress | None = None,
        checkpointing: Checkpointing | None = None,
    ) -> Outcome:  # fmt: skip
        if progress:
            progress(f"{self.steps} steps of {self.batch_size} x {self.seq_len} tokens")
        task = lm_task(self.data, self.seq_len, self.tokenizer, self.vocab_size, max_eval_tokens=self.max_eval_tokens)
        torch.manual_seed(seed)
        flavour = get_flavour(self.backbone)
        positions = self.seq_len if flavour.learned_positions else None
        spec = BackboneSpec(genome, width, task.vocab_size, self.config, not self.embedding_only, positions)
        model = flavour.build(spec)
        if self.embedding_only:
            model.freeze_all_but_embeddings()
        config = TrainConfig(
            lr=self.lr, max_steps=self.steps, batch_size=self.batch_size, micro_batch=self.micro_batch, seed=seed,
            fit_micro_batch=self.fit_micro_batch,
            eval_batch_size=self.micro_batch or self.batch_size,
            warmup_steps=min(self.warmup_steps, self.steps), weight_decay=self.weight_decay, min_lr=self.lr / 10,
            bf16=self.uses_bf16(device), compile=self.compile,
        )  # fmt: skip
        on_step = step_reporter(progress, task.name, self.steps)
        result = train(model, task, config, device, on_step=on_step, checkpointing=checkpointing)
        if result.status == Status.DIVERGED:
            return Outcome(self.worst_quality, {task.name: 0.0}, Status.DIVERGED)
        perplexity = min(result.metrics["perplexity"], self.worst_quality)
        if checkpointing is not None and checkpointing.keep_final:
            keep_final(model, task, checkpointing.directory / FINAL, protocol=self.name, perplexity=perplexity)
        metrics = {"perplexity": perplexity, "steps": result.steps, **throughput(model, self.seq_len, result, device)}
        if result.resumed_from:
            metrics["resumed_from_step"] = result.resumed_from
        if result.micro_batch != self.micro_batch:
            metrics["micro_batch"] = result.micro_batch  # what fit_micro_batch found
        return Outcome(perplexity, {task.name: result.score}, Status.OK, metrics)

    def describe(self, evaluation: Evaluation) -> dict[str, Any]:
        """The validation perplexity (the quality), the sizes, and what training measured (steps, speed...)."""
        return {
            "genome": evaluation.genome, "protocol": evaluation.protocol, "perplexity": evaluation.quality,
            "status": evaluation.status, "params": evaluation.params, "cache_bytes": evaluation.cache_bytes,
            "seconds": evaluation.seconds, "width": evaluation.width, **evaluation.metrics,
        }  # fmt: skip

    def checkpointing(self, directory: Path) -> Checkpointing | None:
        seconds = None if self.checkpoint_minutes is None else self.checkpoint_minutes * 60
        return Checkpointing(directory, self.checkpoint_every, seconds, keep_final=True)

    def training(self) -> dict[str, Any]:
        corpus = self.data or ("a corpus you give (required)" if self.requires_data else "the bundled corpus")
        vocab = self.vocab_size or 256
        return {
            "summary": f"{self.steps} steps of {self.batch_size} x {self.seq_len} tokens ({self.tokenizer}, "
            f"vocabulary {vocab}) on {corpus}{', embeddings only' if self.embedding_only else ''}"
            f"{'' if self.backbone == 'star' else f', {self.backbone} backbone'}",
            "embedding_only": self.embedding_only,
            "backbone": self.backbone,
            "steps": self.steps,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
            "tokens": self.steps * self.batch_size * self.seq_len,
            "tokenizer": self.tokenizer,
            "vocab_size": vocab,
            "lr": self.lr,
            "corpus": corpus,
        }


def keep_final(model: Backbone, task: LMTask, directory: Path, **metadata: Any) -> None:
    """The trained model as an export (``starlab.model.serialization``), with the BPE it was trained with."""
    bpe = task.tokenizer.path if isinstance(task.tokenizer, BPETokenizer) else None
    save(model, directory, tokenizer_file=bpe, trained=True, tokenizer=task.tokenizer.name, **metadata)


def throughput(model: Backbone, seq_len: int, result: TrainResult, device: torch.device) -> dict[str, float]:
    """Training tokens/s and model FLOPs utilisation: the model's training FLOPs per token times tokens/s over
    the device's peak (``starlab.runtime.peak_flops``: a data-sheet bf16 peak for known GPUs, else measured)."""
    flops = training_flops_per_token(model, seq_len) * result.tokens_per_s
    return {"tokens_per_s": result.tokens_per_s, "mfu": flops / runtime.peak_flops(str(device))}


register_protocol(LMProtocol(
    name="lm-quick", description="byte-level LM on the bundled corpus: 300 steps of 16 x 128 tokens, width 64",
    width=64, seq_len=128, steps=300, batch_size=16, warmup_steps=30, cost_s=13.0,
))  # fmt: skip
register_protocol(LMProtocol(
    name="lm-tiny", description="byte-level LM on the bundled corpus, 30 steps: for tests",
    width=32, seq_len=32, steps=30, batch_size=8, warmup_steps=3, cost_s=0.9,
))  # fmt: skip
register_protocol(LMProtocol(
    name="lm-paper",
    description="the paper's per-candidate budget: 5,000 steps x 64 x 4096 tokens (1.3B), lr 8e-4, 500 warm-up "
    "steps, BPE 32k; needs a corpus; GPU/cluster scale",
    width=768, seq_len=4096, steps=5000, batch_size=64, lr=8e-4, warmup_steps=500, tokenizer="bpe",
    vocab_size=32768, max_eval_tokens=1 << 22, requires_data=True, fit_micro_batch=True,
))  # fmt: skip
LM_SMALL = register_protocol(LMProtocol(
    name="lm-small",
    description="BPE-2048 LM on the bundled corpus: 1,000 steps of 8 x 256 tokens, width 96; the target of the "
    "small-scale STAR study (bench/star_small.py), minutes per genome",
    width=96, seq_len=256, steps=1000, batch_size=8, warmup_steps=100, tokenizer="bpe", vocab_size=2048, cost_s=100.0,
))  # fmt: skip
#: ``make run``'s protocol: lm-small's first 150 steps, the proxy that ranked 24 genomes most like lm-small itself
#: (Spearman 0.85, docs/results.md "STAR at small scale"); the MAD demo protocol ranked them at random (0.08)
register_protocol(replace(
    LM_SMALL, name="lm-demo", steps=150, warmup_steps=15, cost_s=15.0,
    description="lm-small cut to its first 150 steps (8 x 256 BPE-2048 tokens each, width 96): make run's "
    "protocol, the proxy that ranks genomes most like lm-small",
))  # fmt: skip
