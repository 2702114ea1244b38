"""Packed against one-by-one training: the same K runs (learning rates x seeds, as a sweep has
them) trained by ``train_pack`` in one pass and by ``train_run`` one after another.

Run by hand (not a test):

    .venv/bin/python benchmarks/packed_speed.py                 # attention and Mamba, widths 16 32 64, K = 4
    .venv/bin/python benchmarks/packed_speed.py --runs 4 8 --steps 300
    python benchmarks/packed_speed.py --device cuda --mixers mamba rwkv --widths 64 --runs 8 32

The setting is ar-cpu's: AR with 64 key/value tokens and 4..8 pairs, ``mask_nonquery``,
batch 32, 2 layers, the study's per-mixer options; on the CPU with one thread (as the
study's jobs run; ``--device cuda`` for a GPU). Each measurement trains ``--steps`` steps (no checkpoints but 0 and the
last) and counts run-steps per second of wall time: ``K * steps / seconds`` of the whole call,
model construction and checkpoint writes included. Packed and one-by-one alternate
``--repeats`` times; the best of each counts.
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch

from tinylang.languages import parse_language_config, write_language
from tinylang.models import ModelConfig
from tinylang.training import TrainConfig, train_run
from tinylang.training.packed import PackedRun, train_pack

LANGUAGE = {"type": "ar", "num_kv": 64, "min_pairs": 4, "max_pairs": 8, "query_type": "key", "mask_nonquery": True,
            "seed": 0, "splits": {"train": 4000, "test": 100}}
MIXER_ARGS = {"attention": {"n_heads": 1, "bias": False}, "mamba": {"d_state": 16, "d_conv": 4, "expand": 2}}
LRS = (1e-3, 3e-3, 1e-2, 3e-4)


def runs(mixer: str, width: int, k: int, steps: int, out: Path) -> list[PackedRun]:
    model = ModelConfig(mixer=mixer, d_model=width, n_layers=2, pos_embed=mixer == "attention",
                        mixer_args=MIXER_ARGS.get(mixer, {}))
    return [PackedRun(f"r{i}", model, TrainConfig(lr=LRS[i % len(LRS)], seed=i, steps=steps, batch_size=32,
                                                  weight_decay=0.0, grad_clip=None, log_every=50, state_every=None),
                      out / f"r{i}") for i in range(k)]


def timed(train, *args) -> float:
    start = time.perf_counter()
    train(*args)
    return time.perf_counter() - start


def packed(pack: list[PackedRun], language: Path, device: str) -> None:
    train_pack(pack, language, device, progress=False)


def one_by_one(pack: list[PackedRun], language: Path, device: str) -> None:
    for run in pack:
        train_run(run.model, run.train, language, run.out_dir, device, run.name, progress=False)


def measure(mixer: str, width: int, k: int, args: argparse.Namespace, language: Path, tmp: Path) -> dict[str, float]:
    """Run-steps per second of the best of ``args.repeats`` packed and one-by-one trainings."""
    best = {"packed": float("inf"), "one by one": float("inf")}
    for r in range(args.repeats):
        for name, train in (("packed", packed), ("one by one", one_by_one)):
            pack = runs(mixer, width, k, args.steps, tmp / f"{mixer}{width}-{k}-{name}-{r}")
            best[name] = min(best[name], timed(train, pack, language, args.device))
    return {name: k * args.steps / seconds for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixers", nargs="+", default=["attention", "mamba"], help="any registered mixers")
    parser.add_argument("--widths", nargs="+", type=int, default=[16, 32, 64])
    parser.add_argument("--runs", nargs="+", type=int, default=[4], help="K, the runs of a pack (one or more)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message="There is a performance drop")  # vmap's SDPA fallback, measured as is
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        language = Path(tmp) / "ar"
        write_language(parse_language_config(LANGUAGE), language)
        for mixer in args.mixers:
            for width in args.widths:
                for k in args.runs:
                    rates = measure(mixer, width, k, args, language, Path(tmp))
                    rows.append((mixer, width, k, rates["packed"], rates["one by one"]))
                    print(f"{mixer:9} d{width:<3} K={k:<3} packed {rates['packed']:8.1f}  one by one "
                          f"{rates['one by one']:8.1f} run-steps/s  ({rates['packed'] / rates['one by one']:.2f}x)",
                          flush=True)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else (platform.processor() or platform.machine())
    print(f"\ntorch {torch.__version__}, {args.device} ({where}), {args.threads} thread(s); {args.steps} steps, "
          f"best of {args.repeats}")
    print("| mixer | width | K | packed run-steps/s | one by one run-steps/s | packed / one by one |")
    print("|---|---|---|---|---|---|")
    for mixer, width, k, p, o in rows:
        print(f"| {mixer} | {width} | {k} | {p:.0f} | {o:.0f} | {p / o:.2f} |")


if __name__ == "__main__":
    main()
