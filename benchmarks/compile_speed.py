"""The compiled train step (a study's ``compile``) against the eager one: ``train_run`` of the
same run with each backend, in steps per second once compiled, and the whole call's seconds
(compilation included).

Run by hand (not a test):

    .venv/bin/python benchmarks/compile_speed.py                                  # CPU: eager vs inductor
    python benchmarks/compile_speed.py --device cuda --backends inductor cudagraphs --mixers attention mamba hyena

The setting is ar-cpu's (AR with 64 key/value tokens and 4..8 pairs, ``mask_nonquery``, batch 32,
2 layers, width 64, the study's per-mixer options). Steps per second is the median of the
train log's rows after the first (one row per 25 steps; the first holds the compilation).
A batch is trimmed to its longest example, so a compiled block sees a few lengths and may
compile more than once (``dynamic=True`` keeps that to a few).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from tinylang.languages import parse_language_config, write_language
from tinylang.models import ModelConfig
from tinylang.training import TrainConfig, train_run

LANGUAGE = {"type": "ar", "num_kv": 64, "min_pairs": 4, "max_pairs": 8, "query_type": "key", "mask_nonquery": True,
            "seed": 0, "splits": {"train": 4000, "test": 100}}
MIXER_ARGS = {"attention": {"n_heads": 1, "bias": False}, "mamba": {"d_state": 16, "d_conv": 4, "expand": 2}}
LOG_EVERY = 25


def measure(mixer: str, backend: str, args: argparse.Namespace, language: Path, out: Path) -> dict[str, float]:
    model = ModelConfig(mixer=mixer, d_model=args.width, n_layers=2, pos_embed=mixer == "attention",
                        mixer_args=MIXER_ARGS.get(mixer, {}))
    train = TrainConfig(lr=1e-3, steps=args.steps, batch_size=32, weight_decay=0.0, grad_clip=None,
                        log_every=LOG_EVERY, state_every=None)
    start = time.perf_counter()
    train_run(model, train, language, out, args.device, progress=False,
              compile=False if backend == "eager" else backend)
    seconds = time.perf_counter() - start
    rates = pd.read_parquet(out / "train_log.parquet").steps_per_s.tolist()[1:]
    return {"steps_per_s": statistics.median(rates) if rates else float("nan"), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixers", nargs="+", default=["attention", "mamba"], help="any registered mixers")
    parser.add_argument("--backends", nargs="+", default=["inductor"],
                        help="compile backends to set against eager: inductor, cudagraphs, aot_eager")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.device}, {args.threads} thread(s), "
          f"{args.steps} steps, width {args.width}")
    print("| mixer | backend | steps/s once compiled | x eager | whole call (s) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_language(parse_language_config(LANGUAGE), tmp / "language")
        for mixer in args.mixers:
            eager = None
            for backend in ["eager", *args.backends]:
                try:
                    result = measure(mixer, backend, args, tmp / "language", tmp / f"{mixer}-{backend}")
                except Exception as err:  # noqa: BLE001 (a backend that cannot compile a mixer is a result)
                    print(f"| {mixer} | {backend} | failed: {type(err).__name__}: {str(err).splitlines()[0][:80]} | | |")
                    continue
                eager = eager or result["steps_per_s"]
                print(f"| {mixer} | {backend} | {result['steps_per_s']:.0f} | {result['steps_per_s'] / eager:.2f} "
                      f"| {result['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
