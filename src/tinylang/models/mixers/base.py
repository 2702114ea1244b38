"""The contract every sequence mixer meets."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .options import MixerOptions


class Mixer(nn.Module):
    """Maps ``(batch, length, d_model)`` to the same shape, causally.

    Subclasses set ``Options`` (their hyperparameters, validated from the config's
    ``mixer_args``, with their shape check and default state mixer: ``tinylang.models.mixers.options``),
    optionally ``block_kind`` and ``rescaled_projections`` (see ``tinylang.models.init``), and are
    registered in ``MIXERS`` by config name. Mixers with a recurrent form derive from
    ``RecurrentMixer``, those with attention probabilities from ``AttentionMixer``.
    """

    Options: ClassVar[type[MixerOptions]] = MixerOptions
    default_state_mixer: ClassVar[str] = "mlp"  # from ``Options`` unless the class sets its own
    # The paper's block around this mixer: "transformer" (norm → mixer, norm → MLP) or "mamba"
    # (RMSNorm → mixer, no MLP); it picks the norm under ``norm: auto`` and the init scheme.
    block_kind: ClassVar[str] = "transformer"
    # Submodules writing into the residual stream whose weights the zoology init rescales with
    # depth (zoology matches ``out_proj``/``fc2`` by name, so only mixers whose original has them).
    rescaled_projections: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "default_state_mixer" not in cls.__dict__:
            cls.default_state_mixer = cls.Options.default_state_mixer

    def __init__(self, d_model: int, options: MixerOptions, layer_idx: int = 0):
        super().__init__()
        type(self).check_shape(d_model, layer_idx + 1, options)
        self.d_model = d_model
        self.options = options
        self.layer_idx = layer_idx

    @classmethod
    def check_shape(cls, d_model: int, n_layers: int, options: MixerOptions) -> None:
        """ValueError when ``options`` cannot build ``n_layers`` layers of width ``d_model``
        (``options.check_shape``, unless the class says otherwise): checked with the study."""
        options.check_shape(d_model, n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class RecurrenceUnavailable(NotImplementedError):
    """This mixer's configuration has no recurrent form (e.g. a long convolution)."""


class RecurrentMixer(Mixer):
    """A mixer that can also run as a recurrence, carrying a fixed-size state token to token.

    Subclasses implement ``mix`` (the parallel form, from an optional state), ``initial_state``
    and ``step``; ``forward`` and ``forward_with_state`` are written here once, from ``mix``.
    A mixer with a recurrent form in some configurations only overrides ``recurrence_missing``
    to name why; ``forward_with_state``, ``initial_state`` and ``step`` then raise
    ``RecurrenceUnavailable`` (``has_recurrence`` says which).
    """

    def mix(self, x: torch.Tensor, state: Any, need_state: bool) -> tuple[torch.Tensor, Any]:
        """``x`` ``(B, L, d)`` from ``state`` (None: the zero state) → ``(y, state after the last
        token)``; the state may be None when not ``need_state``."""
        raise NotImplementedError

    def initial_state(self, batch_size: int, device=None, dtype=None) -> Any:
        """The zero state for ``batch_size`` sequences."""
        raise NotImplementedError

    def step(self, x_t: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One token ``x_t`` ``(B, d)`` → ``(y_t (B, d), new_state)``."""
        raise NotImplementedError

    def recurrence_missing(self) -> str | None:
        """Why this configuration has no recurrent form, or None when it has one."""
        return None

    @property
    def has_recurrence(self) -> bool:
        return self.recurrence_missing() is None

    def require_recurrence(self) -> None:
        reason = self.recurrence_missing()
        if reason is not None:
            raise RecurrenceUnavailable(f"{type(self).__name__} (layer {self.layer_idx}) has no recurrent form: {reason}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, None, need_state=False)[0]

    def forward_with_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """Like ``forward`` but starting from (and returning) a recurrent state."""
        self.require_recurrence()
        return self.mix(x, state, need_state=True)

    def step_through(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """``x`` one token at a time through ``step`` (a ``mix`` for mixers whose parallel
        form cannot start from a state)."""
        state = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        outputs = []
        for t in range(x.shape[1]):
            y_t, state = self.step(x[:, t], state)
            outputs.append(y_t)
        return torch.stack(outputs, dim=1), state


def has_recurrence(mixer: nn.Module) -> bool:
    """Whether ``mixer`` offers ``initial_state``, ``step`` and ``forward_with_state``."""
    return isinstance(mixer, RecurrentMixer) and mixer.has_recurrence


class AttentionMixer(Mixer):
    """A mixer with softmax attention probabilities to show: while ``store_attention`` is set,
    each forward keeps them in ``attention_probs`` ``(B, H, L, L)`` (for the attention evaluator)."""

    def __init__(self, d_model: int, options: MixerOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.store_attention = False
        self.attention_probs: torch.Tensor | None = None


def stores_attention(mixer: nn.Module | type) -> bool:
    """Whether a mixer (or mixer class) keeps attention probabilities on request."""
    cls = mixer if isinstance(mixer, type) else type(mixer)
    return issubclass(cls, AttentionMixer)
