"""Weight initialisation schemes, chosen by ``ModelConfig.init``.

``zoology`` is the scheme of the paper's code (zoology's ``_init_weights``, applied to the whole
model after construction). It depends on the block kind of the mixer:

* Transformer-style blocks: every ``nn.Linear`` and ``nn.Embedding`` weight ~ N(0, 0.02), Linear
  biases zero; then each residual output projection (the mixer's ``rescaled_projections`` and
  the MLP's output layer) ~ N(0, 0.02 / sqrt(2 * n_layers)).
* Mamba-style blocks: Linear weights keep the mixer's own initialisation, Linear biases are zeroed
  (except those marked ``_no_reinit``, e.g. Mamba's dt bias), Embeddings ~ N(0, 0.02), and the
  output projections get PyTorch's default Linear init scaled by 1 / sqrt(n_layers).

``nn.Conv1d`` layers and raw ``nn.Parameter``s keep what their module built. ``torch`` leaves every
module with PyTorch's (and the mixer's) own initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from torch import nn

INITS = ("zoology", "torch")
STD = 0.02


def apply_init(model: nn.Module, scheme: str, block_kind: str, n_layers: int) -> None:
    """Initialise ``model`` (a ``LanguageModel``) in place with ``scheme``."""
    if scheme == "torch":
        return
    if scheme != "zoology":
        raise ValueError(f"unknown init {scheme!r}; allowed: {', '.join(INITS)}")
    mamba_style = block_kind == "mamba"
    for module in model.modules():
        _init_module(module, mamba_style)
    for weight in _residual_projections(model):
        _rescale(weight, mamba_style, n_layers)


def _init_module(module: nn.Module, mamba_style: bool) -> None:
    if isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=STD)
    elif isinstance(module, nn.Linear):
        if not mamba_style:
            nn.init.normal_(module.weight, std=STD)
        if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)


def _residual_projections(model: nn.Module) -> Iterator[nn.Parameter]:
    """The weights that write into the residual stream and are rescaled with depth."""
    for block in model.layers:
        for name in type(block.mixer).rescaled_projections:
            yield block.mixer.get_submodule(name).weight
        if block.mlp is not None:
            yield block.mlp.fc_out.weight


def _rescale(weight: nn.Parameter, mamba_style: bool, n_layers: int) -> None:
    if mamba_style:
        # zoology re-draws PyTorch's default Linear init before scaling, so re-running is idempotent.
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        weight.data /= math.sqrt(n_layers)
    else:
        nn.init.normal_(weight, std=STD / math.sqrt(2 * n_layers))
