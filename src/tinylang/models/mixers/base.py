"""The contract every sequence mixer meets."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn


class MixerOptions(BaseModel):
    """Hyperparameters of one mixer; subclasses add fields. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Mixer(nn.Module):
    """Maps ``(batch, length, d_model)`` to the same shape, causally.

    Subclasses set ``Options`` (their hyperparameters, validated from the config's
    ``mixer_args``) and ``default_state_mixer`` ("mlp" for Transformer-style blocks,
    "none" for Mamba-style blocks), optionally ``has_attention_probs``, ``block_kind`` and
    ``rescaled_projections`` (see ``tinylang.models.init``), and are registered in ``MIXERS`` by config name.
    """

    Options: ClassVar[type[MixerOptions]] = MixerOptions
    default_state_mixer: ClassVar[str] = "mlp"
    # True where the mixer keeps softmax attention probabilities when `store_attention` is set
    # (``attention_probs`` (B, H, L, L) after a forward), for the attention evaluator.
    has_attention_probs: ClassVar[bool] = False
    # The paper's block around this mixer: "transformer" (norm → mixer, norm → MLP) or "mamba"
    # (RMSNorm → mixer, no MLP); it picks the norm under ``norm: auto`` and the init scheme.
    block_kind: ClassVar[str] = "transformer"
    # Submodules writing into the residual stream whose weights the zoology init rescales with
    # depth (zoology matches ``out_proj``/``fc2`` by name, so only mixers whose original has them).
    rescaled_projections: ClassVar[tuple[str, ...]] = ()

    def __init__(self, d_model: int, options: MixerOptions, layer_idx: int = 0):
        super().__init__()
        self.d_model = d_model
        self.options = options
        self.layer_idx = layer_idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class PartialRecurrence:
    """Mixin for mixers with a recurrent form in some configurations only (e.g. a short but not
    a long filter): ``initial_state``, ``forward_with_state`` and ``step`` delegate to the
    ``_``-prefixed methods, and raise ``AttributeError`` (so ``hasattr`` is False) where
    ``recurrence_missing`` names a reason."""

    def recurrence_missing(self) -> str | None:
        return None

    def _recurrent(self, method):
        reason = self.recurrence_missing()
        if reason is not None:
            raise AttributeError(reason)
        return method

    @property
    def initial_state(self):
        """``initial_state(batch_size, device=None, dtype=None)``: the zero state."""
        return self._recurrent(self._initial_state)

    @property
    def forward_with_state(self):
        """``forward_with_state(x, state=None)`` → ``(y, state after the last token)``."""
        return self._recurrent(self._forward_with_state)

    @property
    def step(self):
        """``step(x_t (B, d), state)`` → ``(y_t (B, d), new_state)``."""
        return self._recurrent(self._step)
