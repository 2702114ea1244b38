"""The model section of a study config, validated against the mixer registry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from tinylang.registry import Registry
from tinylang.strict import StrictModel

from .mixers import MIXERS, mixer_spec

STATE_MIXERS: Registry = Registry("state_mixer", modules=dict.fromkeys(("mlp", "glu", "none"), "tinylang.models.state_mixers"))
"""The per-position layers after each mixer (``tinylang.models.state_mixers``), by config name."""


class ModelConfig(StrictModel):
    """One architecture: a mixer on the shared backbone."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mixer: str  # a registered mixer (attention, mamba, ...) or 'module:Class' from outside tinylang
    d_model: StrictInt = Field(64, ge=1)  # the residual stream's width
    n_layers: StrictInt = Field(2, ge=1)  # blocks of mixer (+ state mixer)
    state_mixer: str | None = None  # None: the mixer's own default ("mlp" or "none")
    mlp_ratio: StrictInt = Field(4, ge=1)  # the state mixer's hidden width over d_model
    pos_embed: bool = True  # learned absolute positions (the paper: attention only)
    # auto: the paper's, LayerNorm in Transformer-style blocks, RMSNorm in Mamba-style ones, final LayerNorm
    norm: Literal["auto", "layernorm", "rmsnorm"] = "auto"
    tie_embeddings: bool = True  # the paper's LM head is the token embedding
    init: Literal["zoology", "torch"] = "zoology"  # zoology: the paper's; torch: PyTorch defaults
    # Rows of the position table; None: the language's longest example (the paper's code: 1024).
    n_positions: StrictInt | None = Field(None, ge=1)
    # Unused rows appended to the token table: the paper's AR vocabulary holds one (for its -100 label).
    extra_tokens: StrictInt = Field(0, ge=0)
    mixer_args: dict[str, Any] = Field(default_factory=dict)  # the mixer's own options, validated by it

    @field_validator("mixer")
    @classmethod
    def _known_mixer(cls, name: str) -> str:
        return MIXERS.known(name)

    @field_validator("state_mixer")
    @classmethod
    def _known_state_mixer(cls, name: str | None) -> str | None:
        return name if name is None else STATE_MIXERS.known(name)

    @model_validator(mode="after")
    def _resolve(self) -> ModelConfig:
        spec = mixer_spec(self.mixer)
        # Validate (and fill defaults of) the mixer's own hyperparameters once, here.
        try:
            options = spec.options(**self.mixer_args)
            self.mixer_args = options.model_dump()
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, ('mixer_args', *e['loc'])))}: {e['msg'].removeprefix('Value error, ')}"
                for e in err.errors()
            )
            allowed = ", ".join(spec.options.model_fields)
            raise ValueError(f"{problems} (mixer {self.mixer!r} takes: {allowed})") from None
        try:
            spec.check_shape(self.d_model, self.n_layers, options)
        except ValueError as err:
            raise ValueError(f"mixer_args: {err} (mixer {self.mixer!r}, d_model {self.d_model}, "
                             f"n_layers {self.n_layers})") from None
        if self.state_mixer is None:
            self.state_mixer = spec.default_state_mixer
        return self
