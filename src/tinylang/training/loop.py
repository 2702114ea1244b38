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
  host–device sync per step beyond what boolean-mask indexing itself needs.
- **Resuming.** At every checkpoint before the last, and every ``state_every`` steps,
  ``out_dir/train_state.pt`` is written atomically (a temporary file, flushed to disk, then
  renamed): model, optimiser, scheduler, the shuffling generator's state at the start of the
  current epoch, the global RNG states, the step and the log so far. The state it replaces is
  kept as ``train_state.prev.pt``, so a state file damaged after the fact still leaves one to
  resume from. A run resumes from the newer of the two that is readable and was made by the
  same model config, train config (``state_every`` aside) and language (bit-identical to an
  uninterrupted run on the CPU); an unreadable one is skipped with a warning naming it, one made
  by a different configuration is ignored (the log says so), and with neither training starts
  over (and removes both). Both are deleted once the final checkpoint and log are written.
- **Numerical faults.** Each step's loss is also copied into a small device buffer (no extra
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tinylang.device import resolve_device
from tinylang.languages import read_meta
from tinylang.languages.dataset import IGNORE_INDEX, load_tensors
from tinylang.models import LanguageModel, ModelConfig, build_model, checkpoint_path, save_checkpoint
from tinylang.tables import write_table

from .config import TrainConfig
from .schedules import lr_lambda

log = logging.getLogger("tinylang.training")

STATE_FILE = "train_state.pt"
PREV_STATE_FILE = "train_state.prev.pt"  # the state STATE_FILE replaced
STATE_FORMAT = "tinylang-train-state-v1"
LOG_FILE = "train_log.parquet"
LOG_COLUMNS = ("step", "epoch", "loss", "lr", "tokens_per_s", "steps_per_s", "wall_time_s")
STATE_KEYS = ("step", "model", "optimizer", "scheduler", "epoch_generator_state", "epoch", "pos", "torch_rng_state",
              "rows", "loss_sum", "pending_steps", "wall_time_s")
# Train-config fields that do not change what is trained: a state written under other values resumes.
NOT_FINGERPRINTED = {"state_every"}


class TrainingDiverged(RuntimeError):
    """The loss (or the weights) became NaN or infinite: the run stopped at ``step``.

    ``lr`` is the learning rate of that step's update, ``reason`` says what was non-finite and
    ``checkpoints`` lists the steps of the checkpoints kept (all written before ``step``)."""

    def __init__(self, run: str, step: int, lr: float, reason: str, checkpoints: list[int]):
        self.run, self.step, self.lr, self.reason, self.checkpoints = run, step, lr, reason, checkpoints
        super().__init__(f"run {run or '(unnamed run)'}: {reason} at step {step} (learning rate {lr:g})")


def train_run(
    model_config: ModelConfig,
    train_config: TrainConfig,
    language_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: str | torch.device = "auto",
    run_name: str = "",
    progress: bool = True,
) -> None:
    """Train one model on a language's train split.

    Writes ``out_dir/checkpoints/step{N}.pt`` at ``train_config.checkpoint_steps(total)``
    (step 0 is the untrained model) and ``out_dir/train_log.parquet``; resumes from
    ``out_dir/train_state.pt`` (or ``train_state.prev.pt``) when an interrupted run of the same
    configuration left one. Raises ``TrainingDiverged`` when the loss becomes NaN or infinite,
    after writing the log so far (the checkpoints before the fault stay).
    """
    language_dir, out_dir = Path(language_dir), Path(out_dir)

    # Validate everything cheap before any expensive work.
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
    dev = resolve_device(device)

    seed = train_config.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

    train = load_tensors(language_dir, "train")
    n_train = len(train)
    if n_train == 0:
        raise ValueError(f"the train split of {language_dir} is empty")
    vocab_size = len(meta["vocabulary"])
    max_len = _max_length(language_dir, splits, train)
    total = train_config.total_steps(n_train)
    batch_size = min(train_config.batch_size, n_train)
    steps_per_epoch = -(-n_train // batch_size)
    checkpoint_steps = train_config.checkpoint_steps(total)
    language_hash = meta.get("config_hash")

    model = build_model(model_config, vocab_size, max_len).to(dev)
    model.train()
    optimizer, fused = _make_optimizer(model, train_config)
    multiplier = lr_lambda(train_config, total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    generator = torch.Generator().manual_seed(seed)
    extra = {
        "run": run_name,
        "train_config": train_config.model_dump(mode="json"),
        "language_config_hash": language_hash,
    }
    fingerprint = {
        "model_config": model_config.model_dump(mode="json"),
        "train_config": train_config.model_dump(mode="json", exclude=NOT_FINGERPRINTED),
        "language_config_hash": language_hash,
        "vocab_size": vocab_size,
        "max_len": max_len,
        "train_size": n_train,
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    state_path, prev_path = out_dir / STATE_FILE, out_dir / PREV_STATE_FILE
    state, resumed_from = _read_state([state_path, prev_path], fingerprint, run_name)

    n_params = sum(p.numel() for p in model.parameters())
    label = run_name or "(unnamed run)"
    log.info(
        "run %s: %s model, %s parameters, on %s; %d steps (batch %d, %d examples, %d batches an epoch), "
        "lr %g (%s schedule, %d warmup steps), AdamW%s; checkpoints at steps %s",
        label, model_config.mixer, f"{n_params:,}", dev, total, batch_size, n_train, steps_per_epoch,
        train_config.lr, train_config.schedule, train_config.warmup_steps, " (fused)" if fused else "",
        checkpoint_steps,
    )

    rows: list[dict[str, float | int]] = []
    loss_sum = torch.zeros((), device=dev)
    pending_steps = 0  # steps whose loss is in loss_sum
    wall_offset = 0.0
    if state is None:
        # States of another configuration must not resurface later as the "previous" one.
        for path in (state_path, prev_path):
            path.unlink(missing_ok=True)
        stale = sorted(ckpt_dir.glob("step*.pt")) if ckpt_dir.is_dir() else []
        for path in stale:
            path.unlink()
        if stale:
            log.info("run %s: removed %d checkpoint(s) of an earlier run from %s", label, len(stale), ckpt_dir)
        start = 0
        epoch_state = generator.get_state()
    else:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng_state"])
        if dev.type == "cuda" and state.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(state["cuda_rng_state"], dev)
        epoch_state = state["epoch_generator_state"]
        rows = list(state["rows"])
        loss_sum = state["loss_sum"].to(dev)
        pending_steps = int(state["pending_steps"])
        wall_offset = float(state["wall_time_s"])
        start = int(state["step"])
        log.info("run %s: resuming from step %d of %d (%s)", label, start, total, resumed_from)

    if start == 0 and 0 in checkpoint_steps:
        save_checkpoint(checkpoint_path(ckpt_dir, 0), model, 0, extra)

    # The data, on the device once; lengths stay on the CPU so batch widths need no sync.
    input_ids = train.input_ids.to(dev)
    labels = train.labels.to(dev)
    lengths = train.lengths.cpu()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    clip = train_config.grad_clip
    log_every = train_config.log_every
    checkpoint_set = set(checkpoint_steps)
    state_set = set(train_config.state_steps(total))
    # The losses of the steps since the last check, on the device (a check comes at least every
    # ``log_every`` steps, at each log row): ``recent[:n_recent]`` are steps ``step - n_recent + 1 ..``.
    recent = torch.empty(log_every, device=dev)
    n_recent = 0

    def check_finite(weights: bool) -> None:
        """Stop the run (TrainingDiverged) if a loss since the last check, or (``weights``) a
        weight, is not finite."""
        nonlocal n_recent
        losses, n_recent = recent[:n_recent], 0
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            first = int(bad[0])
            stop(step - len(losses) + 1 + first, f"loss is {float(losses[first])}")
        if weights and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            stop(step, "weights are not finite after the update")

    def stop(fault: int, reason: str) -> None:
        lr_at = train_config.lr * multiplier(fault - 1)
        removed = [p for p in ckpt_dir.glob("step*.pt") if _step_of(p) is not None and _step_of(p) >= fault]
        for path in removed:  # written by an earlier session that got further: not this trajectory
            path.unlink()
        kept = sorted(s for s in map(_step_of, ckpt_dir.glob("step*.pt")) if s is not None)
        _write_log(rows, out_dir / LOG_FILE)
        for path in (state_path, prev_path):
            path.unlink(missing_ok=True)
        log.error(
            "run %s: %s at step %d (learning rate %g); training stopped. Kept the checkpoints at steps %s "
            "(the last good one: step %s) and the train log's %d rows (to step %s)",
            label, reason, fault, lr_at, kept, kept[-1] if kept else "none", len(rows), rows[-1]["step"] if rows else 0,
        )
        raise TrainingDiverged(run_name, fault, lr_at, reason, kept)

    step = start
    # ``epoch_state`` is the generator's state just before it drew epoch ``epoch``'s order,
    # of which ``pos`` batches are done (``pos == steps_per_epoch``: the epoch is complete).
    epoch, pos = (0, 0) if state is None else (int(state["epoch"]), int(state["pos"]))
    generator.set_state(epoch_state)
    order, widths, tokens = _epoch_order(generator, lengths, batch_size, dev, train_config.order)

    t_start = time.perf_counter()
    t_last, steps_since, tokens_since = t_start, 0, 0
    # Redirected to a file (a cluster log), a bar redrawn ten times a second floods it.
    refresh = 0.1 if sys.stderr.isatty() else 10.0
    with tqdm(total=total, initial=start, disable=not progress, desc=run_name or "train", dynamic_ncols=True,
              mininterval=refresh) as bar:
        while step < total:
            if pos == steps_per_epoch:
                epoch, pos = epoch + 1, 0
                epoch_state = generator.get_state()
                order, widths, tokens = _epoch_order(generator, lengths, batch_size, dev, train_config.order)
            index = order[pos * batch_size : (pos + 1) * batch_size]
            width = widths[pos]
            batch_ids = input_ids[:, :width].index_select(0, index)
            batch_labels = labels[:, :width].index_select(0, index)
            select = batch_labels != IGNORE_INDEX
            logits = model(batch_ids, select=select)
            loss = F.cross_entropy(logits, batch_labels[select])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            scheduler.step()

            loss_sum += loss.detach()
            recent[n_recent] = loss.detach()
            n_recent += 1
            pending_steps += 1
            steps_since += 1
            tokens_since += tokens[pos]
            step += 1
            pos += 1
            bar.update(1)

            if step % log_every == 0 or step == total:
                check_finite(weights=False)
                now = time.perf_counter()
                elapsed = max(now - t_last, 1e-9)
                row = {
                    "step": step,
                    "epoch": epoch,
                    "loss": loss_sum.item() / pending_steps,
                    "lr": train_config.lr * multiplier(step - 1),
                    "tokens_per_s": tokens_since / elapsed,
                    "steps_per_s": steps_since / elapsed,
                    "wall_time_s": wall_offset + now - t_start,
                }
                rows.append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", refresh=False)
                loss_sum.zero_()
                pending_steps = 0
                t_last, steps_since, tokens_since = now, 0, 0

            if step in checkpoint_set or step in state_set:
                check_finite(weights=True)
                if step in checkpoint_set:
                    save_checkpoint(checkpoint_path(ckpt_dir, step), model, step, extra)
                if step in state_set:
                    _write_state(
                        state_path,
                        prev_path,
                        {
                            "format": STATE_FORMAT,
                            "fingerprint": fingerprint,
                            "step": step,
                            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "epoch_generator_state": epoch_state,
                            "epoch": epoch,
                            "pos": pos,
                            "torch_rng_state": torch.get_rng_state(),
                            "cuda_rng_state": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                            "rows": rows,
                            "loss_sum": loss_sum.detach().cpu(),
                            "pending_steps": pending_steps,
                            "wall_time_s": wall_offset + time.perf_counter() - t_start,
                        },
                    )

    _write_log(rows, out_dir / LOG_FILE)
    for path in (state_path, prev_path):
        path.unlink(missing_ok=True)
    took = time.perf_counter() - t_start
    done = step - start
    log.info(
        "run %s: finished %d steps%s in %.1f s (%.1f steps/s), final loss %.4f; wrote %s and %d checkpoints",
        label, total, f" ({done} in this session)" if start else "", took, done / max(took, 1e-9),
        rows[-1]["loss"] if rows else float("nan"), out_dir / LOG_FILE, len(checkpoint_steps),
    )


def _max_length(language_dir: Path, splits: list[str], train) -> int:
    """The longest sequence over every split (so evaluation splits fit the position table)."""
    longest = int(train.lengths.max())
    for split in splits:
        if split == "train":
            continue
        tokens = pq.read_table(language_dir / f"{split}.parquet", columns=["tokens"])["tokens"]
        if len(tokens):
            longest = max(longest, int(pc.max(pc.list_value_length(tokens)).as_py() or 0))
    return longest


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


def _write_state(path: Path, prev: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, keeping the state it replaces as ``prev``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if path.exists():
        os.replace(path, prev)
    os.replace(tmp, path)


def _read_state(paths: list[Path], fingerprint: dict[str, Any], label: str) -> tuple[dict[str, Any] | None, Path | None]:
    """The first of ``paths`` (newest first) holding a readable state of this configuration, and its path."""
    label = label or "(unnamed run)"
    for path in paths:
        if not path.exists():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for corrupt or truncated files
            log.warning("run %s: train state %s is unreadable (%s: %s); ignoring it",
                        label, path, type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            continue
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            log.warning("run %s: %s is not a %s file; ignoring it", label, path, STATE_FORMAT)
            continue
        missing = [key for key in STATE_KEYS if key not in state]
        if missing:
            log.warning("run %s: train state %s lacks %s; ignoring it", label, path, ", ".join(missing))
            continue
        saved = state.get("fingerprint", {})
        if saved != fingerprint:
            log.warning(
                "run %s: %s was made by a different configuration (differs in %s); ignoring it",
                label, path, ", ".join(_differences(saved, fingerprint)) or "format",
            )
            continue
        return state, path
    if any(path.exists() for path in paths):
        log.warning("run %s: no usable train state in %s; starting over", label, paths[0].parent)
    return None, None


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} → {b!r}")
    return out


def _write_log(rows: list[dict[str, float | int]], path: Path) -> None:
    df = pd.DataFrame(rows, columns=list(LOG_COLUMNS))
    df = df.astype({"step": "int64", "epoch": "int64"} | {c: "float64" for c in LOG_COLUMNS[2:]})
    write_table(df, path)
