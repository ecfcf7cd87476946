"""MAD's compression model: a backbone encodes the sequence; all tokens are decoded from its last position.

As in mad-lab's ``AutoEncoder``: the last position's hidden state plus fixed sinusoidal embeddings of every
output position goes through a small MLP (norm, linear, GELU, norm, linear, GELU, norm) and an untied
output layer. The decoder is the same for every genome, so the score measures how much of the sequence the
backbone packs into one state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from starlab.model.backbone import Backbone


def sincos_positions(length: int, width: int) -> Tensor:
    """Fixed 1-D sinusoidal position embeddings ``(length, width)``."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10_000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)
    table = torch.zeros(length, width)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * freq), torch.cos(position * freq)
    return table


class AutoEncoder(nn.Module):
    def __init__(self, backbone: Backbone, seq_len: int) -> None:
        super().__init__()
        width = backbone.width
        self.backbone = backbone
        self.register_buffer("positions", sincos_positions(seq_len, width), persistent=False)
        self.decoder = nn.Sequential(
            nn.RMSNorm(width, eps=1e-6), nn.Linear(width, width), nn.GELU(),
            nn.RMSNorm(width, eps=1e-6), nn.Linear(width, width), nn.GELU(),
            nn.RMSNorm(width, eps=1e-6),
        )  # fmt: skip
        self.output = nn.Linear(width, backbone.vocab_size)
        for layer in (*self.decoder, self.output):
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(batch, length)`` tokens -> ``(batch, length, vocab)`` logits, every position from the last state."""
        last = self.backbone.hidden_states(self.backbone.embed_tokens(tokens))[:, -1]
        return self.output(self.decoder(last[:, None, :] + self.positions[: tokens.shape[1]]))
