"""Packed training: runs that differ only in learning rate and seed, trained together.

Each run of a pack is set up by its own ``Trainer`` exactly as ``train_run`` would set it up
(its seed, initial weights, data order, schedule, resumable state, log and checkpoints), then
the pack steps them all at once: their parameters stacked along a leading run axis
(``PackedModels``), each run's batch padded to the widest of the step's batches (a causal
model's outputs before a position do not depend on what follows it, and padded positions carry
no label), one forward and one backward for all runs, and an AdamW with one learning rate per
run. Gradient clipping is per run (each run's own global norm), and a run whose loss becomes
NaN or infinite fails alone: its trainer stops it as ``train_run`` would, the others go on
in a restacked pack without it.
Before every checkpoint or resumable state each run's slice of the stacked weights and
optimiser moments is copied back into its trainer, which writes them in the single-run format:
a packed run resumes alone, and a single run resumes in a pack.

What can differ from ``train_run`` is float rounding (a loss summed in another order, the LM
head on every position rather than the labelled ones, AdamW written out rather than fused). A
run whose training amplifies rounding (DeltaNet at a learning rate of 1e-2 does: torch's own
fused and unfused AdamW part by 30 % within 40 steps) parts from its single-run twin the same way.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tinylang.device import resolve_device
from tinylang.languages.base import PAD
from tinylang.languages.dataset import IGNORE_INDEX
from tinylang.models import ModelConfig
from tinylang.models.packed import PackedModels, packing_problem

from .config import PACKED_FIELDS, TrainConfig, pack_key
from .loop import Trainer, _check_language, train_run
from .monitor import TrainingDiverged
from .state import trainer_lock

log = logging.getLogger("tinylang.training")

@dataclass(frozen=True)
class PackedRun:
    """One run of a pack: what ``train_run`` takes for it."""

    name: str
    model: ModelConfig
    train: TrainConfig
    out_dir: Path
    on_log: Callable[[dict[str, Any]], None] | None = None


def train_pack(runs: Sequence[PackedRun], language_dir: str | os.PathLike, device: str | torch.device = "auto",
               progress: bool = True, lock: bool = True) -> dict[str, TrainingDiverged | None]:
    """Train ``runs`` (one language, one ``pack_key``) together; what ``train_run`` writes, for
    each run. Returns each run's ``TrainingDiverged`` (None: it finished). A mixer that cannot
    run packed, or runs resumed from different steps, train one by one (a log line says why)."""
    if len({pack_key(run.model, run.train) for run in runs}) > 1:
        raise ValueError(f"runs {[run.name for run in runs]} differ in more than {', '.join(PACKED_FIELDS)}: "
                         "they cannot share a pack")
    language_dir, dev = Path(language_dir), resolve_device(device)
    meta, splits = _check_language(language_dir)
    with ExitStack() as locks:
        for run in runs if lock else ():
            locks.enter_context(trainer_lock(run.out_dir))
        trainers = [Trainer(run.model, run.train, language_dir, meta, splits, run.out_dir, dev, run.name, run.on_log)
                    for run in runs]
        problem = _why_not_packed(trainers)
        if problem is None:
            log.info("%d runs train as one pack on %s: %s", len(runs), dev, ", ".join(run.name for run in runs))
            return _Pack(trainers).run(progress)
        log.info("runs %s train one by one: %s", ", ".join(run.name for run in runs), problem)
        return {run.name: _alone(run, language_dir, dev, progress) for run in runs}


def _why_not_packed(trainers: list[Trainer]) -> str | None:
    if len({trainer.start for trainer in trainers}) > 1:
        return "they resume from different steps"
    return packing_problem(trainers[0].model)


def _alone(run: PackedRun, language_dir: Path, dev: torch.device, progress: bool) -> TrainingDiverged | None:
    try:
        train_run(run.model, run.train, language_dir, run.out_dir, dev, run.name, progress, lock=False, on_log=run.on_log)
    except TrainingDiverged as fault:
        return fault
    return None


class _Pack:
    """The trainers of a pack, their stacked weights and one AdamW over them."""

    def __init__(self, trainers: list[Trainer]):
        self.trainers = trainers
        self.cfg = trainers[0].cfg  # shared but for the learning rate and seed
        self.models = PackedModels([trainer.model for trainer in trainers])
        self.optimizer = StackedAdamW(self.models.params, trainers)
        self.faults: dict[str, TrainingDiverged | None] = {trainer.run_name: None for trainer in trainers}

    def run(self, progress: bool) -> dict[str, TrainingDiverged | None]:
        with ExitStack() as sessions:
            # Each run's scheduler gives its learning rate; its own optimiser never steps.
            sessions.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            self.bars = {id(trainer): sessions.enter_context(trainer.session(progress and k == 0))
                         for k, trainer in enumerate(self.trainers)}
            total = self.trainers[0].total
            while self.trainers and self.trainers[0].step < total:
                self._step()
                self._after_step()
        for trainer in self.trainers:
            trainer.finish()
        return self.faults

    def _step(self) -> None:
        batches = [trainer.batch() for trainer in self.trainers]
        width = max(ids.shape[1] for ids, _ in batches)
        ids = torch.stack([F.pad(ids, (0, width - ids.shape[1]), value=PAD) for ids, _ in batches])
        labels = torch.stack([F.pad(labels, (0, width - labels.shape[1]), value=IGNORE_INDEX) for _, labels in batches])
        logits = self.models(ids)
        token_losses = F.cross_entropy(logits.flatten(0, 2), labels.flatten(), ignore_index=IGNORE_INDEX,
                                       reduction="none").view(len(self.trainers), -1)
        losses = token_losses.sum(1) / (labels != IGNORE_INDEX).flatten(1).sum(1)
        self.optimizer.zero_grad()
        losses.sum().backward()  # the runs share no parameter: each gets its own gradient
        if self.cfg.grad_clip is not None:
            self.optimizer.clip_grad_norms(self.cfg.grad_clip)
        self.optimizer.step([trainer.scheduler.get_last_lr()[0] for trainer in self.trainers])
        for trainer, loss in zip(self.trainers, losses.detach()):
            trainer.stepped(loss)

    def _after_step(self) -> None:
        if any(trainer.saves_after(trainer.step) for trainer in self.trainers):
            self.optimizer.copy_to_trainers(self.models, self.trainers)
        for trainer in self.trainers:
            try:
                trainer.after_step(self.bars[id(trainer)])
            except TrainingDiverged as fault:
                self.faults[trainer.run_name] = fault
        if any(self.faults[trainer.run_name] for trainer in self.trainers):
            self._drop_failed()

    def _drop_failed(self) -> None:
        """Restack without the runs that failed: the others' weights and moments go through their
        trainers (as for a state) into a smaller stack, unchanged."""
        self.optimizer.copy_to_trainers(self.models, self.trainers)
        self.trainers = [trainer for trainer in self.trainers if self.faults[trainer.run_name] is None]
        if self.trainers:
            self.models = PackedModels([trainer.model for trainer in self.trainers])
            self.optimizer = StackedAdamW(self.models.params, self.trainers)


class StackedAdamW:
    """``torch.optim.AdamW`` (decoupled weight decay, no amsgrad) over tensors stacked along a
    leading run axis, with one learning rate per run; decay where the run's own optimiser puts it."""

    def __init__(self, params: dict[str, torch.Tensor], trainers: list[Trainer]):
        self.params = params
        names = {id(p): name for name, p in trainers[0].model.named_parameters()}
        group = trainers[0].optimizer.param_groups
        self.decay = {names[id(p)]: g["weight_decay"] for g in group for p in g["params"]}
        self.beta1, self.beta2 = group[0]["betas"]
        self.eps = group[0]["eps"]
        self.exp_avg = {name: torch.zeros_like(params[name]) for name in self.decay}
        self.exp_avg_sq = {name: torch.zeros_like(params[name]) for name in self.decay}
        self.t = 0
        self.index = {id(trainer): k for k, trainer in enumerate(trainers)}  # a run's slice of the stack
        self._copy_from_trainers(trainers)

    def _per_run_params(self, trainer: Trainer) -> dict[str, torch.Tensor]:
        return {name: p for name, p in trainer.model.named_parameters() if name in self.decay}

    def _copy_from_trainers(self, trainers: list[Trainer]) -> None:
        """Moments of resumed runs (their trainers restored them into their own AdamW)."""
        for k, trainer in enumerate(trainers):
            for name, p in self._per_run_params(trainer).items():
                state = trainer.optimizer.state.get(p)
                if state:
                    self.exp_avg[name][k].copy_(state["exp_avg"])
                    self.exp_avg_sq[name][k].copy_(state["exp_avg_sq"])
                    self.t = int(state["step"])

    def copy_to_trainers(self, models: PackedModels, trainers: list[Trainer]) -> None:
        """Each trainer's weights and AdamW moments from its slice, so that it writes them."""
        for trainer in trainers:
            k = self.index[id(trainer)]
            models.copy_into(trainer.model, k)
            for name, p in self._per_run_params(trainer).items():
                if self.t:
                    step = torch.tensor(float(self.t), device=p.device if trainer.fused else "cpu")
                    trainer.optimizer.state[p] = {"step": step, "exp_avg": self.exp_avg[name][k].clone(),
                                                  "exp_avg_sq": self.exp_avg_sq[name][k].clone()}

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def clip_grad_norms(self, max_norm: float) -> None:
        """Each run's gradients scaled to at most ``max_norm`` in its own global norm."""
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        squares = torch.stack([g.flatten(1).double().pow(2).sum(1) for g in grads]).sum(0)
        scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.to(g.dtype).view(-1, *[1] * (g.dim() - 1)))

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        self.t += 1
        lr = torch.tensor(lrs, dtype=torch.float64)
        step_size = lr / (1 - self.beta1 ** self.t)
        bias_correction2_sqrt = (1 - self.beta2 ** self.t) ** 0.5
        for name, p in self.params.items():
            if p.grad is None or name not in self.decay:
                continue
            shape = (-1, *[1] * (p.dim() - 1))
            if self.decay[name]:
                p.mul_((1 - lr * self.decay[name]).to(p).view(shape))
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.lerp_(p.grad, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(p.grad, p.grad, value=1 - self.beta2)
            denom = (v.sqrt() / bias_correction2_sqrt).add_(self.eps)
            p.sub_(step_size.to(p).view(shape) * m / denom)


__all__ = ["PACKED_FIELDS", "PackedRun", "StackedAdamW", "pack_key", "train_pack"]
