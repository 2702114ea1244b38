"""Multi-head causal softmax attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import MIXERS
from .base import AttentionMixer
from .options import AttentionOptions


@MIXERS.register("attention")
class Attention(AttentionMixer):
    """Causal multi-head attention; ``store_attention`` keeps the last probabilities."""

    Options = AttentionOptions
    rescaled_projections = ("out_proj",)

    def __init__(self, d_model: int, options: AttentionOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.n_heads = options.n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=options.bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=options.out_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        if self.store_attention:
            scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
            probs = scores.masked_fill(~causal, float("-inf")).softmax(-1)
            self.attention_probs = probs.detach()
            y = probs @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(batch, length, self.d_model))
