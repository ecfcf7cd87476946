"""A digest of a model's architecture, written into its weights file, so that a changed ``config.json`` is noticed.

A weights file can only be checked against its config by shapes, and many architectures share shapes:
``b112:11111-91111`` (a parallel residual) and ``11111-91111``, or attention with other ``head_dim``,
``heads``, ``rope`` or ``rope_base`` settings, hold the same tensors and compute something else. So
:func:`save <starlab.model.serialization.save>` and the Hugging Face export store a SHA-256 of what defines
the architecture (genome text, width, vocabulary, tied head, positions, LIV settings) in the safetensors
header, which travels with the weights, and every loader recomputes it from the config and refuses a
difference. An older export without the digest still loads, with the shape checks alone.

``scan_chunk`` is left out: it sets the length of the scan's chunks, a matter of speed that results do not
depend on (``LIVConfig``), so a config may change it. This module imports nothing from starlab: the
Hugging Face export copies it beside its modelling code.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

#: the key of the digest in the safetensors header's metadata
ARCHITECTURE_KEY = "starlab_architecture"
#: LIV settings that change speed, not what the model computes
SPEED_ONLY = ("scan_chunk",)


def architecture_digest(model: Any) -> str:
    """``sha256:<hex>`` of a ``Backbone``'s architecture. Numbers are hashed as floats, so ``rope_base``
    written ``10000`` or ``10000.0`` (JSON keeps the difference) is one architecture."""
    liv = {name: value for name, value in asdict(model.config).items() if name not in SPEED_ONLY}
    pos_embed = getattr(model, "pos_embed", None)
    settings = {
        "genome": model.genome.text(), "width": model.width, "vocab_size": model.vocab_size,
        "tie_embeddings": model.head is None,
        "max_positions": pos_embed.num_embeddings if pos_embed is not None else None, "liv_config": liv,
    }  # fmt: skip
    text = json.dumps(_numbers_as_floats(settings), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def architecture_metadata(model: Any) -> dict[str, str]:
    """The safetensors metadata a saved model's weights carry."""
    return {ARCHITECTURE_KEY: architecture_digest(model)}


def check_architecture(model: Any, metadata: dict[str, str] | None, weights: str, config: str) -> None:
    """Refuse (one ``ValueError`` naming both files) weights whose stored digest is not ``model``'s, the model
    its config describes; weights without a digest (older exports) pass."""
    stored = (metadata or {}).get(ARCHITECTURE_KEY)
    if stored is None:
        return
    mine = architecture_digest(model)
    if stored != mine:
        raise ValueError(
            f"{weights}: saved for another architecture than {config} describes (its genome, sizes or LIV settings "
            f"were changed: digest {mine[:19]}… there, {_head(stored)} in the weights); use the config saved with them"
        )


def _head(text: str) -> str:
    """A stored digest as the message shows its own (19 characters), ASCII-escaped: the file may hold anything."""
    return ascii(text[:19] + "…") if len(text) > 19 else ascii(text)


def _numbers_as_floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _numbers_as_floats(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_numbers_as_floats(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value
