"""Training throughput: the pipeline's ``train_run`` against a bare loop of the same model.

Run by hand (not a test):

    .venv/bin/python benchmarks/train_speed.py            # 1000 timed steps, best of 3, 2 threads

The setting: a 2-layer, width-64 attention model (one head, MLP ratio 4, learned positions)
on associative recall with ``num_kv`` 8192 and exactly 16 pairs (37 tokens), batch 32,
``mask_nonquery``, on the CPU. It prints

- **pipeline**: ``train_run``'s steps/s from its own ``train_log.parquet`` (one row per
  100 steps; the first row, with start-up and the step-0 checkpoint, is left out);
- **bare**: a loop over pre-built batches of the same model: forward with the select mask,
  cross-entropy, backward, fused AdamW step; nothing else; timed in 100-step windows too;

and their ratio, over the median and over the best 100-step window of each. Pipeline and
bare runs alternate ``--repeats`` times. On a shared machine the best windows are the ones
least disturbed by other work.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from tinylang.languages import load_tensors, parse_language_config, read_meta, write_language
from tinylang.languages.dataset import IGNORE_INDEX
from tinylang.models import ModelConfig, build_model
from tinylang.training import TrainConfig, train_run

LANGUAGE = {"type": "ar", "num_kv": 8192, "min_pairs": 16, "max_pairs": 16, "mask_nonquery": True, "seed": 0}
MODEL = {"mixer": "attention", "d_model": 64, "n_layers": 2, "mlp_ratio": 4, "pos_embed": True, "mixer_args": {"n_heads": 1}}
BATCH = 32
LOG_EVERY = 100


def pipeline_steps_per_s(language: Path, out: Path, steps: int, grad_clip: float | None) -> list[float]:
    """Steps/s of each ``LOG_EVERY``-step window after the first, from the train log."""
    train_config = TrainConfig(
        lr=1e-3, batch_size=BATCH, steps=steps + LOG_EVERY, log_every=LOG_EVERY, warmup_steps=100, grad_clip=grad_clip
    )
    train_run(ModelConfig(**MODEL), train_config, language, out, device="cpu", run_name="bench", progress=True)
    log = pd.read_parquet(out / "train_log.parquet")
    return log["steps_per_s"].iloc[1:].tolist()


def bare_steps_per_s(language: Path, steps: int, warmup: int = 50) -> list[float]:
    """Steps/s of each ``LOG_EVERY``-step window after ``warmup`` steps."""
    torch.manual_seed(0)
    meta = read_meta(language)
    data = load_tensors(language, "train")
    model = build_model(ModelConfig(**MODEL), len(meta["vocabulary"]), data.input_ids.shape[1])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    batches = [
        (data.input_ids[idx], data.labels[idx]) for idx in order[: 64 * BATCH].split(BATCH)
    ]

    def run(n: int) -> None:
        for i in range(n):
            ids, labels = batches[i % len(batches)]
            select = labels != IGNORE_INDEX
            loss = F.cross_entropy(model(ids, select=select), labels[select])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    run(warmup)
    rates = []
    for _ in range(steps // LOG_EVERY):
        start = time.perf_counter()
        run(LOG_EVERY)
        rates.append(LOG_EVERY / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each; the best counts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-grad-clip", action="store_true", help="train_run without gradient clipping")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        language = Path(tmp) / "ar"
        # One epoch covers the pipeline's steps, so its order never repeats within a run.
        config = LANGUAGE | {"splits": {"train": (args.steps + LOG_EVERY) * BATCH, "test": 100}}
        write_language(parse_language_config(config), language)
        pipeline, bare = [], []
        for r in range(args.repeats):
            b = bare_steps_per_s(language, args.steps)
            p = pipeline_steps_per_s(language, Path(tmp) / f"run{r}", args.steps, None if args.no_grad_clip else 1.0)
            print(
                f"repeat {r + 1}: pipeline {statistics.median(p):.1f} steps/s, bare {statistics.median(b):.1f} "
                f"steps/s (medians of {LOG_EVERY}-step windows)",
                flush=True,
            )
            pipeline += p
            bare += b

    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")
    print(f"grad clip: {'off' if args.no_grad_clip else '1.0 (pipeline only)'}")
    print(f"{len(pipeline)} + {len(bare)} windows of {LOG_EVERY} steps")
    print("                     median   best")
    pm, bm, pb, bb = statistics.median(pipeline), statistics.median(bare), max(pipeline), max(bare)
    print(f"pipeline train_run: {pm:7.1f} {pb:7.1f} steps/s")
    print(f"bare loop:          {bm:7.1f} {bb:7.1f} steps/s")
    print(f"ratio:              {pm / bm:7.3f} {pb / bb:7.3f}")


if __name__ == "__main__":
    main()
