"""A STAR backbone built from a genome: embedding -> N pre-norm residual LIV slots -> RMSNorm -> LM head.

    x = embed(tokens)                                     # N(0, 1) embeddings
    for each slot i:   x = x + LIV_i(RMSNorm_i(x))        # LIV_i may share with earlier slots
    logits = head(RMSNorm(x))                             # tied by default: embed^T, scaled by width ** -0.5

That is the default of the genome's backbone genes; they also give LayerNorm or no norm, post-norm
(``x = norm_i(x + LIV_i(x))``, no final norm) and parallel pairs (``x = x + LIV_i(n_i(x)) + LIV_j(n_j(x))``),
see :mod:`starlab.model.blocks`. ``init="gpt2"`` initialises as Hugging Face's GPT-2 (the random-transformer
network, with the ``gpt2`` flavour of :mod:`starlab.model.flavours`).

Sharing is real. Featurizer sharing: the slots of a group hold the *same* featurizer module, so its parameters
exist (and train) once. Feature-group sharing: later members are built without a cached side and receive
the cached features of the group's first member, in the parallel form and in decoding alike, so the group's
decode state exists once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from starlab.genome import Genome
from starlab.liv import LIVConfig, State
from starlab.model.blocks import final_norm, residual_groups, slot_norms
from starlab.model.memory import check_spec_fits
from starlab.model.slots import build_slots
from starlab.model.spec import BackboneSpec

__all__ = ["INITS", "Backbone", "build_slots", "sample"]

#: initialisation schemes: STAR's (PyTorch defaults, N(0, 1) embeddings) and Hugging Face GPT-2's
INITS = ("star", "gpt2")
#: what a block hands the structure around it: (slot index, its input, the features it reuses) -> (output,
#: its cached features)
SlotCall = Callable[[int, Tensor, Any], tuple[Tensor, Any]]


class Backbone(nn.Module):
    """Language model over ``vocab_size`` tokens with the architecture of ``genome`` at ``width``.

    Every argument is checked first (one-line ``ValueError``s, by :class:`~starlab.model.spec.BackboneSpec`),
    and a build off the meta device checks that the model fits in the memory of the default device before
    anything is allocated (:func:`starlab.model.memory.check_model_fits`). ``init`` is one of :data:`INITS`.
    ``Backbone.from_spec(spec)`` builds from the settings as one value; ``model.spec`` gives them back.
    """

    def __init__(
        self,
        genome: Genome,
        width: int,
        vocab_size: int,
        config: LIVConfig | None = None,
        tie_embeddings: bool = True,
        max_positions: int | None = None,
        init: str = "star",
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        #: the checked settings; its genome is canonical (relabelled group ids and no-op sharing build the same model)
        self.spec = spec = BackboneSpec(genome, width, vocab_size, config, tie_embeddings, max_positions)
        genome, width, vocab_size = spec.genome, spec.width, spec.vocab_size
        self.genome, self.width, self.vocab_size, self.config = genome, width, vocab_size, spec.config
        device = torch.get_default_device()
        if device.type != "meta":  # a meta build (sizes only) allocates nothing; a real one must fit first
            check_spec_fits(spec, device)
        sources = genome.feature_sources()
        #: slot -> the earlier slot whose cached features it reuses (feature-group sharing)
        self.feature_source = {i: src for i, src in enumerate(sources) if src is not None and src != i}
        #: slots whose cached features a later slot reuses
        self.feature_leaders = set(self.feature_source.values())
        genes = genome.backbone
        #: the slots of each residual add (one each, or parallel pairs)
        self.groups = residual_groups(len(genome), genes.residual)
        self.post_norm = genes.position == 2

        self.embed = nn.Embedding(vocab_size, width)
        #: optional learned absolute positions (the random-transformer setting); LIVs carry their own otherwise
        self.pos_embed = nn.Embedding(spec.max_positions, width) if spec.max_positions else None
        #: norms[i] is the norm slot i applies (nn.Identity where it has none)
        self.norms = slot_norms(genes, len(genome), width)
        self.livs = nn.ModuleList(build_slots(genome, width, self.config))
        self.final_norm = final_norm(genes, width)
        self.head = None if spec.tie_embeddings else nn.Linear(width, vocab_size, bias=False)
        if init == "gpt2":
            self._init_gpt2()
            return
        # N(0, 1) embeddings keep each token's identity a sizeable part of the residual stream next to the
        # slots' outputs (with N(0, 0.02), transformer++ stayed near chance on MAD recall where N(0, 1) solved it)
        for embedding in (self.embed, self.pos_embed):
            if embedding is not None:
                nn.init.normal_(embedding.weight, std=1.0)

    @classmethod
    def from_spec(cls, spec: BackboneSpec, init: str = "star") -> Backbone:
        """The backbone ``spec`` describes (``init`` as for the constructor)."""
        if not isinstance(spec, BackboneSpec):
            raise ValueError(f"spec must be a BackboneSpec, got {type(spec).__name__}")
        return cls(spec.genome, spec.width, spec.vocab_size, spec.config, spec.tie_embeddings, spec.max_positions, init)

    def _init_gpt2(self) -> None:
        """Hugging Face GPT-2's ``_init_weights``: every Linear weight and embedding N(0, 0.02), biases 0, norm
        gains 1 and biases 0; each output projection (GPT-2's ``c_proj``, here every slot's ``out_proj``)
        N(0, 0.02 / sqrt(2 n_layer)) with n_layer = slots / 2 (a GPT-2 layer is two slots). Other parameters
        (decay rates, filters) keep their class's initialisation."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, (nn.Linear, nn.LayerNorm)) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                nn.init.ones_(module.weight)
        for liv in self.livs:
            if getattr(liv, "out_proj", None) is not None:
                nn.init.normal_(liv.out_proj.weight, std=0.02 / math.sqrt(len(self.livs)))

    def check_finite(self, where: str) -> None:
        """Refuse weights holding NaN or infinite values (loaded from ``where``): a model with them computes NaN."""
        for name, tensor in self.state_dict().items():
            if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                bad = int((~tensor.isfinite()).sum())
                raise ValueError(
                    f"{where}: {name!r} holds {bad} NaN or infinite values (a diverged training?); "
                    "a model with them computes NaN"
                )

    # ---- parallel form (training) --------------------------------------------------------------------
    def forward(self, tokens: Tensor) -> Tensor:
        """``(batch, length)`` token ids -> ``(batch, length, vocab_size)`` next-token logits."""
        return self.logits(self.hidden_states(self.embed_tokens(tokens)))

    def embed_tokens(self, tokens: Tensor, start: int = 0) -> Tensor:
        """Token (plus learned position) embeddings of ``tokens (batch, length)`` starting at ``start``."""
        x = self.embed(self.check_tokens(tokens, rank=2))
        if self.pos_embed is not None:
            end = start + tokens.shape[1]
            if end > self.pos_embed.num_embeddings:
                raise ValueError(f"sequence of {end} tokens exceeds max_positions={self.pos_embed.num_embeddings}")
            x = x + self.pos_embed.weight[start:end]
        return x

    def hidden_states(self, x: Tensor) -> Tensor:
        """Run the slots on embeddings ``(batch, length, width)``; returns the final-normed hidden states."""
        return self.blocks(x, lambda index, h, reused: self.livs[index].forward_features(h, shared=reused))

    def blocks(self, x: Tensor, run: SlotCall) -> Tensor:
        """The residual structure around the slots, the same in both forms: ``run`` computes one slot.

        Each residual group reads one stream ``x``; its slots add to it in slot order (so a slot may reuse the
        cached features of its pair partner), and post-norm normalises after the group's add.
        """
        shared: dict[int, Any] = {}
        for group in self.groups:
            stream = x
            for index in group:
                reused = shared[self.feature_source[index]] if index in self.feature_source else None
                y, cached = run(index, stream if self.post_norm else self.norms[index](stream), reused)
                if index in self.feature_leaders:
                    shared[index] = cached
                x = x + y
            if self.post_norm:
                x = self.norms[group[-1]](x)
        return self.final_norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        """Next-token logits; the tied head scales by ``width ** -0.5`` (as T5) so unit-size embeddings
        give unit-size initial logits."""
        if self.head is not None:
            return self.head(hidden)
        return F.linear(hidden * self.width**-0.5, self.embed.weight)

    # ---- recurrent form (decoding) -------------------------------------------------------------------
    def init_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> list:
        """Empty decoding state: one entry per slot (feature-reusing slots hold only their own side).

        With learned positions, the last entry is the position of the next token (a plain int).
        """
        state: list = [liv.init_state(batch, device, dtype) for liv in self.livs]
        return [*state, 0] if self.pos_embed is not None else state

    def step(self, token: Tensor, state: list[State]) -> tuple[Tensor, list[State]]:
        """One token per sequence ``(batch,)`` -> logits ``(batch, vocab_size)`` and the updated state."""
        position = state[-1] if self.pos_embed is not None else 0
        x = self.embed_tokens(self.check_tokens(token, rank=1)[:, None], start=position)[:, 0]
        new_state: list = [None] * len(self.livs)

        def run(index: int, h: Tensor, reused: Any) -> tuple[Tensor, Any]:
            y, new_state[index], cached = self.livs[index].step_features(h, state[index], shared=reused)
            return y, cached

        hidden = self.blocks(x, run)
        if self.pos_embed is not None:
            new_state.append(position + 1)
        return self.logits(hidden), new_state

    @torch.no_grad()
    def generate(
        self,
        prompt: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Extend ``prompt (batch, length)`` by sampling, token by token, with the recurrent form.

        The prompt is read with the recurrent form too (one step per token), so generation never needs the
        parallel form's whole-sequence activations. ``temperature=0`` picks the most likely token.
        """
        prompt = self.check_tokens(prompt, rank=2)
        state = self.init_state(prompt.shape[0], prompt.device)
        for position in range(prompt.shape[1]):
            logits, state = self.step(prompt[:, position], state)
        out = [prompt]
        for _ in range(max_new_tokens):
            token = sample(logits, temperature, top_k, generator)
            out.append(token[:, None])
            logits, state = self.step(token, state)
        return torch.cat(out, dim=1)

    # ---- training modes ------------------------------------------------------------------------------
    def embedding_parameters(self) -> list[nn.Parameter]:
        """Token embedding, learned positions and the (untied) unembedding."""
        modules = (self.embed, self.pos_embed, self.head)
        return [p for m in modules if m is not None for p in m.parameters()]

    def freeze_all_but_embeddings(self) -> None:
        """Embedding-only training: every LIV and norm stays at its random initialisation."""
        keep = {id(p) for p in self.embedding_parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in keep)

    # ---- sizes ---------------------------------------------------------------------------------------
    def num_params(self, non_embedding: bool = False) -> int:
        """Unique parameters (shared tensors once); ``non_embedding`` leaves out embeddings and the head."""
        params = {id(p): p for p in self.parameters()}
        if non_embedding:
            for p in self.embedding_parameters():
                params.pop(id(p), None)
        return sum(p.numel() for p in params.values())

    def cache_bytes(self, seq_len: int, bytes_per_value: int = 2) -> int:
        """Analytic decoding state after ``seq_len`` tokens, one sequence (shared feature groups once)."""
        return sum(liv.cache_bytes(seq_len, bytes_per_value) for liv in self.livs)

    def check_tokens(self, tokens: Any, rank: int) -> Tensor:
        shape = "(batch, length)" if rank == 2 else "(batch,)"
        if not isinstance(tokens, Tensor) or tokens.dtype not in (torch.int64, torch.int32):
            kind = tokens.dtype if isinstance(tokens, Tensor) else type(tokens).__name__
            raise ValueError(f"tokens must be an int64 tensor of shape {shape}, got {kind}")
        if tokens.dim() != rank:
            raise ValueError(f"tokens must have shape {shape}, got {tuple(tokens.shape)}")
        if torch.compiler.is_compiling():  # a data-dependent branch would break the graph: check on the device
            torch._assert_async(((tokens >= 0) & (tokens < self.vocab_size)).all(), "token ids out of range")
        elif tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(
                f"token ids must be in 0..{self.vocab_size - 1}, got {int(tokens.min())}..{int(tokens.max())}"
            )
        return tokens


def sample(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> Tensor:
    """Draw one token per row of ``logits (batch, vocab)``."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)
