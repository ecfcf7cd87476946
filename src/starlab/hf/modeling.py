"""A starlab backbone as a Hugging Face ``transformers`` causal language model.

``starlab export RUN --format hf --out OUT`` writes this module into OUT as ``modeling_starlab.py``, with the
starlab modules it needs beside it (``starlab.hf.vendor``), so that

    AutoModelForCausalLM.from_pretrained(OUT, trust_remote_code=True)

loads the model where starlab is not installed. The model is the starlab ``Backbone`` itself, not a port: the
logits are starlab's. Generation uses the backbone's recurrent form as its cache (:class:`StarlabCache`): a
recurrence or short convolution keeps a state of constant size, attention a key/value cache that grows by one
entry per token, and a feature group's cache is held once, by its first member.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model
from torch import Tensor
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from starlab.errors import one_line
from starlab.genome.genome import Genome
from starlab.liv.base import state_nbytes
from starlab.liv.config import LIVConfig
from starlab.model.backbone import Backbone
from starlab.model.digest import check_architecture
from starlab.model.spec import BackboneSpec

WEIGHTS, CONFIG = "model.safetensors", "config.json"


class StarlabConfig(PretrainedConfig):
    """What builds the backbone: its genome, width, vocabulary and LIV settings (``LIVConfig`` as a dict)."""

    model_type = "starlab"

    def __init__(
        self,
        genome: str = "1,1,1,1,1-9,1,1,1,1",
        width: int = 64,
        vocab_size: int = 256,
        liv_config: dict[str, Any] | None = None,
        tie_embeddings: bool = True,
        max_positions: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.genome, self.width, self.vocab_size = genome, width, vocab_size
        self.liv_config = dict(liv_config or {})
        self.tie_embeddings, self.max_positions = tie_embeddings, max_positions
        self.hidden_size = width  # the name transformers' utilities look for
        self.num_hidden_layers = len(Genome.parse(genome).slots)
        super().__init__(**kwargs)

    def backbone_spec(self) -> BackboneSpec:
        """The architecture this config describes (checked: a bad setting is one ``ValueError``)."""
        return BackboneSpec(
            Genome.parse(self.genome), self.width, self.vocab_size, LIVConfig(**self.liv_config),
            self.tie_embeddings, self.max_positions,
        )  # fmt: skip


def read_config(path: Path) -> StarlabConfig:
    """``config.json`` as a :class:`StarlabConfig`; a ``ValueError`` naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror or error})") from None
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path}: not JSON ({one_line(error)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object (a starlab model config)")
    try:
        return StarlabConfig(**data)
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{path}: not a starlab model config ({one_line(error)})") from None


def load_weights(backbone: Backbone, path: Path, config_path: Path) -> None:
    """Load ``path`` into ``backbone`` (strictly: every tensor, each in its shape) after checking that the
    weights were saved for the architecture ``config_path`` describes; then refuse non-finite weights."""
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata()
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({one_line(error)})") from None
    check_architecture(backbone, metadata, str(path), str(config_path))
    try:
        load_model(backbone, str(path), strict=True)
    except (RuntimeError, SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path}: the weights do not match {config_path.name} ({one_line(error)})") from None
    backbone.check_finite(str(path))


class StarlabCache:
    """The backbone's decoding state for a batch: one entry per slot, and how many tokens it has read.

    Not a ``transformers`` ``Cache``: those hold keys and values per layer, while a starlab slot holds what its
    own recurrent form needs (a key/value cache for attention, a fixed-size state for recurrences and short
    convolutions, nothing for a gated MLP).
    """

    def __init__(self, state: list, seen: int) -> None:
        self.state, self.seen = state, seen

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def nbytes(self) -> int:
        """Bytes of the tensors the cache holds (the memory a generated token costs, measured)."""
        return state_nbytes(self.state)


class StarlabForCausalLM(PreTrainedModel, GenerationMixin):
    """The starlab backbone with ``transformers``' loading, ``generate`` and outputs."""

    config_class = StarlabConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"

    def __init__(self, config: StarlabConfig) -> None:
        super().__init__(config)
        self.backbone = Backbone.from_spec(config.backbone_spec())

    @classmethod
    def from_pretrained(cls, directory: str | Path, *args: Any, config: StarlabConfig | None = None, **kwargs: Any):
        """Build the backbone and load its safetensors weights the way starlab saved them (shared tensors once,
        re-tied by the model that shares them), rather than through ``transformers``' loader, which would
        re-initialise a shared tensor stored under one name only. ``dtype``/``torch_dtype`` and ``device_map``
        (one device) are honoured; other loader options do not apply to a local export.

        An export is a file anything may have changed: a config whose genome or LIV settings differ from what
        the weights were saved with (``starlab.model.digest``), weights that are not finite, a torn or
        unreadable file: each is one ``ValueError`` naming the file."""
        directory = Path(directory)
        if config is None:
            config = read_config(directory / CONFIG)
        try:
            model = cls(config)
        except (ValueError, TypeError, KeyError, RuntimeError) as error:
            raise ValueError(
                f"{directory / CONFIG}: the model it describes cannot be built ({one_line(error)})"
            ) from None
        load_weights(model.backbone, directory / WEIGHTS, directory / CONFIG)
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        if isinstance(dtype, torch.dtype):
            model.to(dtype)
        device = kwargs.get("device_map")
        if isinstance(device, (str, torch.device)) and str(device) != "auto":
            model.to(device)
        return model.eval()

    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.backbone.embed

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is the backbone's own state (StarlabCache), made in forward

    def prepare_inputs_for_generation(
        self, input_ids: Tensor, cache: StarlabCache | None = None, use_cache: bool | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The whole prompt first; afterwards only the newest token, read against the cache."""
        if isinstance(cache, StarlabCache):
            return {"input_ids": input_ids[:, cache.seen :], "cache": cache, "use_cache": True}
        return {"input_ids": input_ids, "use_cache": use_cache is not False}

    def forward(
        self,
        input_ids: Tensor,
        cache: StarlabCache | None = None,
        use_cache: bool | None = None,
        labels: Tensor | None = None,
        attention_mask: Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutput:
        """Logits for ``input_ids (batch, length)``; with ``use_cache``, also the state after reading them.

        Without a cache this is the parallel form. With one (or ``use_cache``), the tokens are read one at a
        time by the recurrent form, continuing ``cache``. ``attention_mask`` must be all ones or absent (the
        backbone has no padding): batch prompts of equal length, or pad on the right and ignore the padded
        positions, as a causal model allows.
        """
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("starlab models take no padding on the left: pad on the right, or batch equal lengths")
        if cache is None and not use_cache:
            logits = self.backbone(input_ids)
        else:
            logits, cache = self._read(input_ids, cache)
        loss = None
        if labels is not None:
            shifted = logits[:, :-1].reshape(-1, logits.shape[-1])
            loss = torch.nn.functional.cross_entropy(shifted.float(), labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutputWithCache(loss=loss, logits=logits, cache=cache)

    def _read(self, input_ids: Tensor, cache: StarlabCache | None) -> tuple[Tensor, StarlabCache]:
        if cache is None:
            cache = StarlabCache(self.backbone.init_state(input_ids.shape[0], input_ids.device), 0)
        logits, state = [], cache.state
        for position in range(input_ids.shape[1]):
            step_logits, state = self.backbone.step(input_ids[:, position], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1), StarlabCache(state, cache.seen + input_ids.shape[1])


@dataclass
class CausalLMOutputWithCache(CausalLMOutput):
    """``CausalLMOutput`` plus the cache, under the name ``generate`` carries from step to step."""

    cache: StarlabCache | None = None
