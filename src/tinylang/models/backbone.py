"""The one backbone every architecture shares, with stable hook-point names."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import pyvene_hook
from .config import ModelConfig
from .hooks import HOOK_POINTS
from .init import apply_init
from .mixers import MIXERS
from .state_mixers import STATE_MIXERS


@dataclass
class HookConfig:
    """The dimensions intervention libraries read off ``model.config``."""

    d_model: int
    n_layers: int
    vocab_size: int
    max_len: int


def make_norm(kind: str, d_model: int) -> nn.Module:
    return nn.LayerNorm(d_model) if kind == "layernorm" else nn.RMSNorm(d_model, eps=1e-5)


def block_norm(config: ModelConfig) -> str:
    """The blocks' norm: ``norm: auto`` follows the paper (RMSNorm in Mamba-style blocks)."""
    if config.norm != "auto":
        return config.norm
    return "rmsnorm" if MIXERS.get(config.mixer).block_kind == "mamba" else "layernorm"


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(norm(x))``, then ``x + mlp(norm(x))`` if it has one."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        mixer_cls = MIXERS.get(config.mixer)
        self.norm1 = make_norm(block_norm(config), config.d_model)
        self.mixer = mixer_cls(config.d_model, mixer_cls.Options(**config.mixer_args), layer_idx)
        if config.state_mixer == "none":
            self.norm2 = self.mlp = None
        else:
            self.norm2 = make_norm(block_norm(config), config.d_model)
            self.mlp = STATE_MIXERS.get(config.state_mixer)(config.d_model, config.mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


class LanguageModel(nn.Module):
    """Token (+ optional learned position) embedding → blocks → final norm → LM head."""

    def __init__(self, config: ModelConfig, vocab_size: int, max_len: int):
        super().__init__()
        if config.n_positions is not None and config.n_positions < max_len:
            raise ValueError(f"model n_positions ({config.n_positions}) is shorter than the longest example "
                             f"({max_len} tokens): raise n_positions or leave it unset")
        self.model_config = config
        self.language_vocab_size = vocab_size
        table_size = vocab_size + config.extra_tokens
        max_len = config.n_positions or max_len
        self.config = HookConfig(config.d_model, config.n_layers, table_size, max_len)
        self.embed = nn.Embedding(table_size, config.d_model)
        self.pos_embed = nn.Embedding(max_len, config.d_model) if config.pos_embed else None
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.norm_f = make_norm("layernorm" if config.norm == "auto" else config.norm, config.d_model)
        self.lm_head = nn.Linear(config.d_model, table_size, bias=False)
        apply_init(self, config.init, MIXERS.get(config.mixer).block_kind, config.n_layers)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    @property
    def components(self) -> list[str]:
        """The hook points this model has (no ``mlp_*`` for blocks without a state mixer)."""
        has_mlp = self.layers[0].mlp is not None
        return [c for c in HOOK_POINTS if has_mlp or not c.startswith("mlp_")]

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states, ``(batch, length, d_model)``."""
        x = self.embed(input_ids)
        if self.pos_embed is not None:
            length = input_ids.shape[1]
            if length > self.config.max_len:
                raise ValueError(f"sequence length {length} exceeds the model's max_len {self.config.max_len}")
            x = x + self.pos_embed.weight[:length]
        for block in self.layers:
            x = block(x)
        return self.norm_f(x)

    def compile_blocks(self, backend: bool | str = True) -> None:
        """Compile each block in place with ``torch.compile`` (True: its default backend). The
        blocks hold the arithmetic; the embedding, the head's boolean selection (a shape that
        depends on the data) and the head stay eager. Weights and their names are unchanged,
        so checkpoints and hooks are too."""
        if backend == "cudagraphs" and self.device.type != "cuda":
            raise ValueError(f"compile: cudagraphs needs the model on a CUDA device, not {self.device}; "
                             "use compile: true, or false")
        for block in self.layers:
            block.compile(backend="inductor" if backend is True else backend, dynamic=True)

    def forward(self, input_ids: torch.Tensor, select: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(batch, length, vocab)``; with a boolean ``select`` mask, only the
        selected positions' logits ``(n_selected, vocab)`` (training needs no more)."""
        hidden = self.hidden_states(input_ids)
        if select is not None:
            hidden = hidden[select]
        return self.lm_head(hidden)


def build_model(config: ModelConfig, vocab_size: int, max_len: int) -> LanguageModel:
    """A freshly initialised model for ``config``."""
    return LanguageModel(config, vocab_size, max_len)


pyvene_hook.install(LanguageModel)  # pyvene.IntervenableModel works on our models, whatever the import order
