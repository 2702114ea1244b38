"""Training throughput of every registered mixer, in a bare training loop on the CPU.

Run by hand (not a test):

    .venv/bin/python benchmarks/mixer_speed.py                    # all mixers, 3 windows of 30 steps, 2 threads
    .venv/bin/python benchmarks/mixer_speed.py --only rwkv,deltanet

The setting: each mixer in ``tinylang.models.MIXERS`` at width 64, 2 layers, its default
options (and default state mixer), on associative recall with ``num_kv`` 8192 and exactly
16 pairs (37 tokens an example), batch 32, ``mask_nonquery`` (loss only at the answer), on
the CPU. Where a mixer has alternative parallel/sequential forms they get a row each, chosen
through ``mixer_args``: ``rwkv`` ``wkv`` "scan" / "softmax", ``deltanet`` ``algorithm``
"chunk" / "loop", ``mamba2`` ``chunk_size`` 64 / 8.

The step timed is the one ``benchmarks/train_speed.py`` calls "bare": forward with the select
mask, cross-entropy, backward, fused AdamW step, over pre-built batches; nothing else. After
``--warmup`` steps, ``--windows`` windows of ``--steps`` steps each are timed; the table gives
the median window's steps/s, the best window's, tokens/s (non-padding input tokens per second,
at the median) and the parameter count, in all and without the token/position embeddings and
the LM head (which hold about 1.05 M of the parameters of every model here).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tinylang.languages import make_language, parse_language_config, to_tensors
from tinylang.languages.dataset import IGNORE_INDEX
from tinylang.models import MIXERS, ModelConfig, build_model

LANGUAGE = {"type": "ar", "num_kv": 8192, "min_pairs": 16, "max_pairs": 16, "mask_nonquery": True, "seed": 0}
D_MODEL = 64
N_LAYERS = 2
BATCH = 32
N_BATCHES = 16  # distinct pre-built batches, cycled

# Alternative parallel/sequential forms: mixer → [(label, mixer_args), ...]; the first is the default.
VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "rwkv": [("wkv=scan (default)", {"wkv": "scan"}), ("wkv=softmax", {"wkv": "softmax"})],
    "deltanet": [("algorithm=chunk (default)", {"algorithm": "chunk"}), ("algorithm=loop", {"algorithm": "loop"})],
    "mamba2": [("chunk_size=64 (default)", {"chunk_size": 64}), ("chunk_size=8", {"chunk_size": 8})],
}


@dataclass
class Result:
    mixer: str
    variant: str
    params: int
    core_params: int  # without the token/position embeddings and the LM head
    rates: list[float] = field(default_factory=list)  # steps/s per window
    tokens_per_step: float = 0.0


def make_batches(n_batches: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int, int, float]:
    """Pre-built ``(input_ids, labels)`` batches, the vocabulary size, the width and the
    mean number of non-padding tokens a batch."""
    config = parse_language_config(LANGUAGE | {"splits": {"train": n_batches * BATCH}})
    language = make_language(config)
    data = to_tensors(language.generate()["train"], mask_nonquery=config.mask_nonquery)
    batches = list(zip(data.input_ids.split(BATCH), data.labels.split(BATCH)))
    tokens = data.lengths.sum().item() / n_batches
    return batches, len(language.vocabulary()), data.input_ids.shape[1], tokens


def time_mixer(
    mixer: str,
    mixer_args: dict[str, Any],
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    vocab_size: int,
    max_len: int,
    warmup: int,
    steps: int,
    windows: int,
) -> tuple[int, int, list[float]]:
    """Parameter counts (all; without embeddings and LM head) and steps/s of each timed window."""
    torch.manual_seed(0)
    config = ModelConfig(mixer=mixer, d_model=D_MODEL, n_layers=N_LAYERS, mixer_args=mixer_args)
    model = build_model(config, vocab_size, max_len)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    prepared = [(ids, labels, labels != IGNORE_INDEX) for ids, labels in batches]
    prepared = [(ids, labels[select], select) for ids, labels, select in prepared]

    def run(n: int) -> None:
        for i in range(n):
            ids, targets, select = prepared[i % len(prepared)]
            loss = F.cross_entropy(model(ids, select=select), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    run(warmup)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        run(steps)
        rates.append(steps / (time.perf_counter() - start))
    params = sum(p.numel() for p in model.parameters())
    outer = {id(p) for m in (model.embed, model.pos_embed, model.lm_head) if m is not None for p in m.parameters()}
    core = sum(p.numel() for p in model.parameters() if id(p) not in outer)
    return params, core, rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per mixer")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before the windows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", type=str, default=None, help="comma-separated mixer names (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    names = MIXERS.names()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in MIXERS]
        if unknown:
            parser.error(f"unknown mixer(s) {unknown}; registered: {', '.join(names)}")
        names = [n for n in names if n in wanted]

    batches, vocab_size, max_len, tokens_per_step = make_batches(N_BATCHES)
    results = []
    wall = time.perf_counter()
    for name in names:
        for variant, mixer_args in VARIANTS.get(name, [("default", {})]):
            params, core, rates = time_mixer(
                name, mixer_args, batches, vocab_size, max_len, args.warmup, args.steps, args.windows
            )
            results.append(Result(name, variant, params, core, rates, tokens_per_step))
            print(
                f"{name:20s} {variant:27s} {statistics.median(rates):7.1f} steps/s "
                f"(windows: {', '.join(f'{r:.1f}' for r in rates)})",
                flush=True,
            )

    print()
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}; "
        f"width {D_MODEL}, {N_LAYERS} layers, batch {BATCH}, {max_len} tokens an example; "
        f"{args.warmup} warm-up steps, {args.windows} windows of {args.steps} steps; "
        f"{time.perf_counter() - wall:.0f} s in all"
    )
    print()
    print("| mixer | form | params | params w/o embeddings | steps/s (median) | steps/s (best) | tokens/s (median) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        median = statistics.median(r.rates)
        print(
            f"| {r.mixer} | {r.variant} | {r.params:,} | {r.core_params:,} | {median:.1f} | {max(r.rates):.1f} "
            f"| {median * r.tokens_per_step:,.0f} |"
        )


if __name__ == "__main__":
    main()
