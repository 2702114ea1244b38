"""The training section of a study config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, PositiveFloat, StrictInt, model_validator

from tinylang.strict import StrictModel


class TrainConfig(StrictModel):
    """Optimiser, schedule, length and checkpointing of one training run."""

    # No inf/nan (a learning rate of .inf used to be accepted), and no bool for an int (YAML's
    # `batch_size: true` used to become 1).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lr: PositiveFloat = 1e-3  # the peak learning rate (AdamW)
    weight_decay: float = Field(0.01, ge=0)  # AdamW's, on matrices other than embeddings
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's
    warmup_steps: StrictInt = Field(0, ge=0)  # linear warmup from 0 to lr
    schedule: Literal["constant", "linear", "cosine"] = "linear"  # the decay after warmup
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # the decay ends at lr * min_lr_ratio
    batch_size: StrictInt = Field(32, ge=1)  # examples per optimiser step
    # The examples' order in each epoch: a fresh seeded permutation ("shuffle"), or the train
    # split's own order every epoch ("file": the paper's code, whose splits are i.i.d. samples).
    order: Literal["shuffle", "file"] = "shuffle"
    steps: StrictInt | None = Field(None, ge=1)  # optimiser steps in all
    epochs: StrictInt | None = Field(None, ge=1)  # or whole passes over the train split
    grad_clip: float | None = Field(1.0, gt=0)  # the gradient norm's limit; None: no clipping
    seed: StrictInt = 0  # the initialisation and the data order
    checkpoints: list[StrictInt] = Field(default_factory=list)  # steps to save at; 0 and the last always saved
    log_every: StrictInt = Field(10, ge=1)  # steps per train-log row (mean loss since the last)
    # Every this many steps (and at every checkpoint) the resumable training state is written, so a
    # killed or preempted job loses at most this many steps; None: at checkpoints only. It does
    # not change what is trained: a state written at another interval still resumes.
    state_every: StrictInt | None = Field(500, ge=1)

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps or epochs")
        if any(step < 0 for step in self.checkpoints):
            raise ValueError("checkpoints must be non-negative step numbers")
        return self

    def total_steps(self, train_size: int) -> int:
        """Optimiser steps for a train split of ``train_size`` examples."""
        if self.steps is not None:
            return self.steps
        return self.epochs * -(-train_size // self.batch_size)

    def checkpoint_steps(self, total_steps: int) -> list[int]:
        """Sorted steps at which checkpoints are written (always 0 and ``total_steps``)."""
        return sorted({0, total_steps, *(s for s in self.checkpoints if s <= total_steps)})

    def state_steps(self, total_steps: int) -> list[int]:
        """Sorted steps after which the resumable state is written: every checkpoint and every
        ``state_every`` steps, except step 0 and the last (nothing is left to resume there)."""
        every = range(self.state_every, total_steps, self.state_every) if self.state_every else ()
        return sorted({*every, *self.checkpoint_steps(total_steps)} - {0, total_steps})


CompileChoice = Literal[False, True, "inductor", "cudagraphs", "aot_eager"]
"""How a run's train step is compiled (``LanguageModel.compile_blocks``): not at all (False), with
``torch.compile``'s default backend (True, ``inductor``: generated kernels), with CUDA graphs
(``cudagraphs``: a GPU's kernel launches captured once and replayed) or traced only
(``aot_eager``: the graphs run op by op, to check what compiling changes)."""

PACKED_FIELDS = ("lr", "seed")
"""What may differ between the runs of one pack (tinylang.training.packed)."""


def pack_key(model: Any, train: TrainConfig) -> tuple[str, str]:
    """Runs with the same key (and language) can train in one pack: ``model`` (a ModelConfig)
    and the train config but for ``PACKED_FIELDS``."""
    return model.model_dump_json(), train.model_copy(update=dict.fromkeys(PACKED_FIELDS)).model_dump_json()
