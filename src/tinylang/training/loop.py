"""The training loop: AdamW on pre-built tensors, checkpoints, a train log, resumable state.

Choices worth knowing:

- **Batches.** The train split is loaded once as padded tensors and moved to the device
  once. Each epoch is a permutation drawn from a seeded ``torch.Generator`` (``order:
  shuffle``), or the split's own order, the same every epoch (``order: file``, what the
  paper's code does: its step ``s`` trains on batch ``s mod batches``); a batch is an
  ``index_select`` of the pre-built tensors, trimmed to its longest sequence. An epoch has
  ``ceil(N / batch_size)`` batches: the last, partial batch is **kept** (the same count
  ``TrainConfig.total_steps`` uses for ``epochs``).
- **Loss.** Cross-entropy over the labelled positions only (``labels != -100``), with the LM
  head evaluated only there (``model(input_ids, select=mask)``); the mean over the batch's
  labelled positions.
- **Optimiser.** AdamW (``fused=True`` where this torch supports it for the device, else the
  default implementation). Weight decay applies to weights with ≥ 2 dimensions except
  embedding tables (token and position embeddings, and a head tied to them) and parameters
  marked ``_no_weight_decay``; biases and norm gains get none. Gradients are clipped to
  ``grad_clip`` (global norm) when it is set. The learning rate follows ``lr_lambda``
  through ``LambdaLR``, stepped once per update.
- **Log.** One row per ``log_every`` steps and at the last step: ``step``, ``epoch`` (the
  0-based epoch the step's batch came from), ``loss`` (mean over the steps since the previous
  row), ``lr`` (the learning rate the step's update used), ``tokens_per_s`` (non-padding input
  tokens) and ``steps_per_s`` over the same steps (checkpoint writes in the interval included),
  and ``wall_time_s`` since training started (summed over resumed sessions). The loss is
  accumulated in a device tensor and read only when a row is written, so there is no
  host–device sync per step beyond what boolean-mask indexing itself needs. The job's log
  file gets a progress line (step, %, steps/s, time left, loss) at each tenth of the run and
  at least once a minute (``tinylang.progress``), checked when a row is written.
- **Resuming** (``tinylang.training.state``). At every checkpoint before the last, and every
  ``state_every`` steps, ``out_dir/train_state.pt`` is written atomically (a temporary file,
  flushed to disk, then renamed): model, optimiser, scheduler, the shuffling generator's state at the start of the
  current epoch, the global RNG states, the step and the log so far. The state it replaces is
  kept as ``train_state.prev.pt``, so a state file damaged after the fact still leaves one to
  resume from. A run resumes from the newer of the two that is readable and was made by the
  same model config, train config (``state_every`` aside) and language (bit-identical to an
  uninterrupted run on the CPU); an unreadable one is skipped with a warning naming it, one made
  by a different configuration is ignored (the log says so), and with neither training starts
  over (and removes both). Both are deleted once the final checkpoint and log are written.
- **Numerical faults** (``tinylang.training.monitor``). Each step's loss is also copied into a small device buffer (no extra
  host sync per step), which is checked for NaN or infinite values whenever a log row,
  checkpoint or state is written (so at least every ``log_every`` steps); checkpoints and
  states are also only written from finite weights. On a fault the run stops at the first
  non-finite step: an error names the run, the step and that step's learning rate, the
  checkpoints written before that step stay, the train log holds the rows before it, the state
  files are removed (resuming would only repeat the fault) and ``TrainingDiverged`` is raised.
- **Determinism.** ``seed`` seeds Python's ``random``, NumPy, torch (model initialisation)
  and the shuffling generator: the same seed gives the same losses on the CPU. CUDA kernels
  may still differ in the last bits from run to run.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tinylang.device import resolve_device
from tinylang.languages.base import read_meta
from tinylang.languages.dataset import IGNORE_INDEX, load_tensors, longest_example
from tinylang.models import LanguageModel, ModelConfig, build_model, checkpoint_path, save_checkpoint
from tinylang.progress import ProgressLines
from tinylang.tables import write_table

from .config import CompileChoice, TrainConfig
from .monitor import DivergenceMonitor, TrainingDiverged
from .schedules import lr_lambda
from .state import fingerprint, read_state, remove_states, state_paths, trainer_lock, write_state

log = logging.getLogger("tinylang.training")

LOG_FILE = "train_log.parquet"
LOG_COLUMNS = ("step", "epoch", "loss", "lr", "tokens_per_s", "steps_per_s", "wall_time_s")


def train_run(
    model_config: ModelConfig,
    train_config: TrainConfig,
    language_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: str | torch.device = "auto",
    run_name: str = "",
    progress: bool = True,
    lock: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    compile: CompileChoice = False,
) -> None:
    """Train one model on a language's train split.

    Writes ``out_dir/checkpoints/step{N}.pt`` at ``train_config.checkpoint_steps(total)``
    (step 0 is the untrained model) and ``out_dir/train_log.parquet``; resumes from
    ``out_dir/train_state.pt`` (or ``train_state.prev.pt``) when an interrupted run of the same
    configuration left one. Raises ``TrainingDiverged`` when the loss becomes NaN or infinite,
    after writing the log so far (the checkpoints before the fault stay). ``lock``: hold
    ``out_dir`` for this trainer (``trainer_lock``; False where the caller holds it already).
    ``on_log``: called with each train-log row as it is written (e.g. to track the run).
    ``compile``: compile the model's blocks for the train step (``LanguageModel.compile_blocks``).
    """
    language_dir, out_dir = Path(language_dir), Path(out_dir)
    meta, splits = _check_language(language_dir)  # everything cheap before any expensive work
    with trainer_lock(out_dir) if lock else nullcontext():
        Trainer(model_config, train_config, language_dir, meta, splits, out_dir, resolve_device(device),
                 run_name, on_log, compile).run(progress)


def _check_language(language_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The language's meta and splits, once every split file it lists is there."""
    if not language_dir.is_dir():
        raise FileNotFoundError(f"language directory {language_dir} does not exist (the language stage writes it)")
    meta = read_meta(language_dir)  # FileNotFoundError naming meta.json
    splits = list(meta.get("splits", {}))
    if "train" not in splits:
        raise ValueError(f"language {language_dir} has no train split (its splits: {splits})")
    for split in splits:
        path = language_dir / f"{split}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist although {language_dir / 'meta.json'} lists split {split!r}")
    return meta, splits


class Trainer:
    """One training session of a run: the model, optimiser, schedule and data order, restored
    from the run's resumable state where it has one, then stepped to the end."""

    def __init__(self, model_config: ModelConfig, cfg: TrainConfig, language_dir: Path, meta: dict[str, Any],
                 splits: list[str], out_dir: Path, dev: torch.device, run_name: str,
                 on_log: Callable[[dict[str, Any]], None] | None = None, compile: CompileChoice = False):
        self.cfg, self.dev, self.out_dir, self.run_name, self.on_log = cfg, dev, out_dir, run_name, on_log
        self.label = run_name or "(unnamed run)"
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)
        self.train = load_tensors(language_dir, "train")
        n_train = len(self.train)
        if n_train == 0:
            raise ValueError(f"the train split of {language_dir} is empty")
        vocab_size = len(meta["vocabulary"])
        # Every split must fit the position table; the train split's lengths are in memory already.
        max_len = max(int(self.train.lengths.max()),
                      longest_example(language_dir, meta, [s for s in splits if s != "train"]))
        self.total = cfg.total_steps(n_train)
        self.batch_size = min(cfg.batch_size, n_train)
        self.steps_per_epoch = -(-n_train // self.batch_size)
        self.checkpoint_steps = cfg.checkpoint_steps(self.total)
        self.model = build_model(model_config, vocab_size, max_len).to(dev)
        self.model.train()
        if compile:
            self.model.compile_blocks(compile)
            log.info("run %s: blocks compiled (torch.compile, backend %s)", self.label,
                     "inductor" if compile is True else compile)
        self.optimizer, self.fused = _make_optimizer(self.model, cfg)
        self.multiplier = lr_lambda(cfg, self.total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.multiplier)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        language_hash = meta.get("config_hash")
        self.extra = {"run": run_name, "train_config": cfg.model_dump(mode="json"),
                      "language_config_hash": language_hash}
        self.fingerprint = fingerprint(model_config, cfg, language_hash, vocab_size, max_len, n_train)
        self.ckpt_dir = out_dir / "checkpoints"
        out_dir.mkdir(parents=True, exist_ok=True)
        n_params = sum(p.numel() for p in self.model.parameters())
        state, resumed_from = read_state(state_paths(out_dir), self.fingerprint, self.label)
        log.info(
            "run %s: %s model, %s parameters, on %s; %d steps (batch %d, %d examples, %d batches an epoch), "
            "lr %g (%s schedule, %d warmup steps), AdamW%s; checkpoints at steps %s",
            self.label, model_config.mixer, f"{n_params:,}", dev, self.total, self.batch_size, n_train,
            self.steps_per_epoch, cfg.lr, cfg.schedule, cfg.warmup_steps, " (fused)" if self.fused else "",
            self.checkpoint_steps,
        )
        self._start(state, resumed_from)

    def _start(self, state: dict[str, Any] | None, resumed_from: Path | None) -> None:
        """Counters, log rows and data position: fresh, or as the state left them."""
        self.rows: list[dict[str, float | int]] = []
        self.loss_sum = torch.zeros((), device=self.dev)
        self.pending_steps = 0  # steps whose loss is in loss_sum
        self.wall_offset = 0.0
        # ``epoch_state`` is the generator's state just before it drew epoch ``epoch``'s order,
        # of which ``pos`` batches are done (``pos == steps_per_epoch``: the epoch is complete).
        self.epoch, self.pos, self.start = 0, 0, 0
        if state is None:
            self._clear_earlier_run()
            self.epoch_state = self.generator.get_state()
        else:
            self._restore(state)
            log.info("run %s: resuming from step %d of %d (%s)", self.label, self.start, self.total, resumed_from)
        self.step = self.start

    def _clear_earlier_run(self) -> None:
        # States of another configuration must not resurface later as the "previous" one.
        remove_states(self.out_dir)
        stale = sorted(self.ckpt_dir.glob("step*.pt")) if self.ckpt_dir.is_dir() else []
        for path in stale:
            path.unlink()
        if stale:
            log.info("run %s: removed %d checkpoint(s) of an earlier run from %s", self.label, len(stale),
                     self.ckpt_dir)

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng_state"])
        if self.dev.type == "cuda" and state.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(state["cuda_rng_state"], self.dev)
        self.epoch_state = state["epoch_generator_state"]
        self.rows = list(state["rows"])
        self.loss_sum = state["loss_sum"].to(self.dev)
        self.pending_steps = int(state["pending_steps"])
        self.wall_offset = float(state["wall_time_s"])
        self.start = int(state["step"])
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])

    def run(self, progress: bool) -> None:
        """Step to the end: log rows, checkpoints and states on their steps; then the log."""
        with self.session(progress) as bar:
            while self.step < self.total:
                self._train_step()
                self.after_step(bar)
        self.finish()

    @contextmanager
    def session(self, progress: bool) -> Iterator[tqdm]:
        """The data on the device, the epoch's order, the monitor and the clocks; the progress bar
        (yielded) until the last step."""
        if self.start == 0 and 0 in self.checkpoint_steps:
            save_checkpoint(checkpoint_path(self.ckpt_dir, 0), self.model, 0, self.extra)
        # The data, on the device once; lengths stay on the CPU so batch widths need no sync.
        self.input_ids, self.labels = self.train.input_ids.to(self.dev), self.train.labels.to(self.dev)
        self.lengths = self.train.lengths.cpu()
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.monitor = DivergenceMonitor(self.cfg.log_every, self.params, self.dev)
        self.checkpoint_set, self.state_set = set(self.checkpoint_steps), set(self.cfg.state_steps(self.total))
        self.generator.set_state(self.epoch_state)
        self.order, self.widths, self.tokens = _epoch_order(self.generator, self.lengths, self.batch_size, self.dev,
                                                            self.cfg.order)
        self.t_start = time.perf_counter()
        self.t_last, self.steps_since, self.tokens_since = self.t_start, 0, 0
        self.progress = ProgressLines(log, f"run {self.label}", self.total, start=self.start)
        # Redirected to a file (a cluster log), a bar redrawn ten times a second floods it.
        refresh = 0.1 if sys.stderr.isatty() else 10.0
        with tqdm(total=self.total, initial=self.start, disable=not progress, desc=self.run_name or "train",
                  dynamic_ncols=True, mininterval=refresh) as bar:
            yield bar

    def saves_after(self, step: int) -> bool:
        """Whether the step writes a checkpoint or a state (and so reads the weights)."""
        return step in self.checkpoint_set or step in self.state_set

    def after_step(self, bar: tqdm) -> None:
        """The log row, checkpoint and state the step just done is due (each after its check)."""
        bar.update(1)
        if self.step % self.cfg.log_every == 0 or self.step == self.total:
            self._check(weights=False)
            self._log_row(bar)
        if self.saves_after(self.step):
            self._check(weights=True)
            if self.step in self.checkpoint_set:
                save_checkpoint(checkpoint_path(self.ckpt_dir, self.step), self.model, self.step, self.extra)
            if self.step in self.state_set:
                write_state(*state_paths(self.out_dir), self._state())

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch's token ids and labels (a new epoch's order drawn first where one begins)."""
        if self.pos == self.steps_per_epoch:
            self.epoch, self.pos = self.epoch + 1, 0
            self.epoch_state = self.generator.get_state()
            self.order, self.widths, self.tokens = _epoch_order(self.generator, self.lengths, self.batch_size,
                                                                self.dev, self.cfg.order)
        index = self.order[self.pos * self.batch_size : (self.pos + 1) * self.batch_size]
        width = self.widths[self.pos]
        return self.input_ids[:, :width].index_select(0, index), self.labels[:, :width].index_select(0, index)

    def stepped(self, loss: torch.Tensor) -> None:
        """Count a step whose update is done and whose (detached) loss is ``loss``."""
        self.scheduler.step()
        self.loss_sum += loss
        self.monitor.record(loss)
        self.pending_steps += 1
        self.steps_since += 1
        self.tokens_since += self.tokens[self.pos]
        self.step += 1
        self.pos += 1

    def _train_step(self) -> None:
        batch_ids, batch_labels = self.batch()
        select = batch_labels != IGNORE_INDEX
        loss = F.cross_entropy(self.model(batch_ids, select=select), batch_labels[select])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.optimizer.step()
        self.stepped(loss.detach())

    def _log_row(self, bar: tqdm) -> None:
        now = time.perf_counter()
        elapsed = max(now - self.t_last, 1e-9)
        row = {
            "step": self.step,
            "epoch": self.epoch,
            "loss": self.loss_sum.item() / self.pending_steps,
            "lr": self.cfg.lr * self.multiplier(self.step - 1),
            "tokens_per_s": self.tokens_since / elapsed,
            "steps_per_s": self.steps_since / elapsed,
            "wall_time_s": self.wall_offset + now - self.t_start,
        }
        self.rows.append(row)
        if self.on_log is not None:
            self.on_log(row)
        self.progress.update(self.step, loss=row["loss"])
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", refresh=False)
        self.loss_sum.zero_()
        self.pending_steps = 0
        self.t_last, self.steps_since, self.tokens_since = now, 0, 0

    def _state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch_generator_state": self.epoch_state,
            "epoch": self.epoch,
            "pos": self.pos,
            "torch_rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.cuda.get_rng_state(self.dev) if self.dev.type == "cuda" else None,
            "rows": self.rows,
            "loss_sum": self.loss_sum.detach().cpu(),
            "pending_steps": self.pending_steps,
            "wall_time_s": self.wall_offset + time.perf_counter() - self.t_start,
        }

    def _check(self, weights: bool) -> None:
        """Stop the run at a fault since the last check (``TrainingDiverged``): the checkpoints
        from the fault on and the state files removed, the log so far written."""
        fault = self.monitor.fault(self.step, weights)
        if fault is None:
            return
        step, reason = fault
        lr_at = self.cfg.lr * self.multiplier(step - 1)
        for path in self.ckpt_dir.glob("step*.pt"):  # later ones: written by an earlier session that got further
            if _step_of(path) is not None and _step_of(path) >= step:
                path.unlink()
        kept = sorted(s for s in map(_step_of, self.ckpt_dir.glob("step*.pt")) if s is not None)
        _write_log(self.rows, self.out_dir / LOG_FILE)
        remove_states(self.out_dir)
        log.error(
            "run %s: %s at step %d (learning rate %g); training stopped. Kept the checkpoints at steps %s "
            "(the last good one: step %s) and the train log's %d rows (to step %s)",
            self.label, reason, step, lr_at, kept, kept[-1] if kept else "none", len(self.rows),
            self.rows[-1]["step"] if self.rows else 0,
        )
        raise TrainingDiverged(self.run_name, step, lr_at, reason, kept)

    def finish(self) -> None:
        _write_log(self.rows, self.out_dir / LOG_FILE)
        remove_states(self.out_dir)
        took, done = time.perf_counter() - self.t_start, self.step - self.start
        log.info(
            "run %s: finished %d steps%s in %.1f s (%.1f steps/s), final loss %.4f; wrote %s and %d checkpoints",
            self.label, self.total, f" ({done} in this session)" if self.start else "", took, done / max(took, 1e-9),
            self.rows[-1]["loss"] if self.rows else float("nan"), self.out_dir / LOG_FILE, len(self.checkpoint_steps),
        )


def _make_optimizer(model: LanguageModel, cfg: TrainConfig) -> tuple[torch.optim.AdamW, bool]:
    """AdamW with decay on ≥ 2-D non-embedding weights; fused where supported."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for p in model.parameters():  # tied parameters come once
        if not p.requires_grad:
            continue
        if p.ndim >= 2 and id(p) not in embeddings and not getattr(p, "_no_weight_decay", False):
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [
        {"params": params, "weight_decay": wd}
        for params, wd in ((decay, cfg.weight_decay), (no_decay, 0.0))
        if params
    ]
    kwargs = {"lr": cfg.lr, "betas": tuple(cfg.betas)}
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs), True
    except (RuntimeError, ValueError, TypeError) as err:
        log.debug("fused AdamW unavailable (%s); using the default implementation", err)
        return torch.optim.AdamW(groups, **kwargs), False


def _epoch_order(
    generator: torch.Generator, lengths: torch.Tensor, batch_size: int, device: torch.device, kind: str = "shuffle"
) -> tuple[torch.Tensor, list[int], list[int]]:
    """One epoch's order (on ``device``: shuffled, or the split's own order for ``kind="file"``)
    and each batch's width and token count."""
    n = lengths.shape[0]
    order = torch.randperm(n, generator=generator) if kind == "shuffle" else torch.arange(n)
    batches = -(-n // batch_size)
    padded = torch.zeros(batches * batch_size, dtype=lengths.dtype)
    padded[:n] = lengths[order]
    per_batch = padded.view(batches, batch_size)
    widths = per_batch.max(dim=1).values.tolist()
    tokens = per_batch.sum(dim=1).tolist()
    return order.to(device), widths, tokens


def _step_of(path: Path) -> int | None:
    """The step of a checkpoint file ``step{N}.pt`` (None for any other name)."""
    digits = path.name.removeprefix("step").removesuffix(".pt")
    return int(digits) if path.name.startswith("step") and path.suffix == ".pt" and digits.isdigit() else None


def _write_log(rows: list[dict[str, float | int]], path: Path) -> None:
    df = pd.DataFrame(rows, columns=list(LOG_COLUMNS))
    df = df.astype({"step": "int64", "epoch": "int64"} | {c: "float64" for c in LOG_COLUMNS[2:]})
    write_table(df, path)
