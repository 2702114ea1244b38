"""An LSTM (Hochreiter & Schmidhuber 1997) as a sequence mixer: the recurrent baseline.

The LSTM baseline is a whole model made of stacked LSTM layers. Here it is expressed on the
shared backbone instead: each block's mixer is one ``nn.LSTM(d_model, d_model)`` layer, and
the block supplies the pre-norm and the residual connection (``x + lstm(norm(x))``), with no
state mixer (its options' ``default_state_mixer = "none"``, like Mamba's blocks). So an ``n_layers``
model is ``n_layers`` stacked LSTM layers with residual connections and norms between them,
plus the backbone's embeddings and LM head; the hook points (``mixer_output`` etc.) are the
same as for every other architecture. The hidden size equals ``d_model`` (no projection), so
the recurrent state of one layer is ``(h, c)``, ``2 * d_model`` numbers per sequence.

Parameters keep ``nn.LSTM``'s names under ``lstm.`` (``lstm.weight_ih_l0`` ``(4 d, d)``,
``lstm.weight_hh_l0`` ``(4 d, d)``, ``lstm.bias_ih_l0``, ``lstm.bias_hh_l0``; gate order
input, forget, cell, output) and PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from . import MIXERS
from .base import RecurrentMixer
from .options import LSTMOptions

# (h [B, d_model], c [B, d_model])
LSTMState = tuple[torch.Tensor, torch.Tensor]


@MIXERS.register("lstm")
class LSTM(RecurrentMixer):
    """One LSTM layer per block; see the module docstring for the design choice."""

    Options = LSTMOptions

    def __init__(self, d_model: int, options: LSTMOptions, layer_idx: int = 0):
        super().__init__(d_model, options, layer_idx)
        self.lstm = nn.LSTM(d_model, d_model, num_layers=1, bias=options.bias, batch_first=True)

    def mix(self, x: torch.Tensor, state: LSTMState | None, need_state: bool) -> tuple[torch.Tensor, LSTMState]:
        hc = None if state is None else (state[0].unsqueeze(0), state[1].unsqueeze(0))
        y, (h, c) = self.lstm(x, hc)
        return y, (h.squeeze(0), c.squeeze(0))

    def initial_state(self, batch_size: int, device=None, dtype=None) -> LSTMState:
        """Zero state ``(h (B, d_model), c (B, d_model))``."""
        weight = self.lstm.weight_ih_l0
        dtype = dtype if dtype is not None else weight.dtype
        device = device if device is not None else weight.device
        zeros = torch.zeros(batch_size, self.d_model, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def step(self, x_t: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        """One token: ``x_t`` ``(B, d_model)`` → ``(y_t (B, d_model), new_state)``, by the gate
        equations (not through ``nn.LSTM``, so it also checks the parallel form)::

            i, f, g, o = split(W_ih x_t + b_ih + W_hh h + b_hh)
            c' = sigmoid(f) * c + sigmoid(i) * tanh(g);   h' = sigmoid(o) * tanh(c')
        """
        h, c = state
        gates = x_t @ self.lstm.weight_ih_l0.T + h @ self.lstm.weight_hh_l0.T
        if self.lstm.bias:
            gates = gates + self.lstm.bias_ih_l0 + self.lstm.bias_hh_l0
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)
