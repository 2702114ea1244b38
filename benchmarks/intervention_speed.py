"""Intervention sweep speed: ``run_interventions`` against a straightforward pyvene loop.

Run by hand (not a test):

    .venv/bin/python benchmarks/intervention_speed.py            # 320 examples, 2 threads, best of 3

The setting: a 2-layer, width-64 attention model at a seeded random initialisation (nothing is
trained: the timing does not depend on the weights) on associative recall with ``num_kv`` 64
and 4–8 pairs (11–19 tokens before padding), built in memory; ``--examples`` test examples.
One sweep is: both corrupted items (``query_item_orig``, ``target_item_orig``) × every layer ×
every component × every probe position plus the ``random`` control position (7 positions).

- **sweep**: ``tinylang.evaluation.run_interventions`` (one ``IntervenableModel`` per (layer,
  component), one clean pass per batch that captures every source activation for both
  corrupted items, all positions stacked in one patched pass, no-op cells skipped), including
  building its long DataFrame. Also timed: ``interchange`` alone (the same without the
  DataFrame), and ``interchange`` with ``skip_noops=False`` (every cell run).
- **baseline**: a Python loop over (corrupted item, layer, component, position) that builds a
  new ``pyvene.IntervenableModel`` each time and runs all examples through it in batches,
  one position per call, with pyvene running the clean source itself (``sources=[clean]``).

Before any timing is reported, the baseline's ``p_patched`` must agree with the sweep's to
1e-5 for every (item, layer, component, position, example). Sweep and baseline alternate
``--repeats`` times; best and median are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import time
from importlib.metadata import version

import numpy as np
import torch

from tinylang.evaluation.behaviour import batches, select_mask, trimmed
from tinylang.evaluation.interventions import (
    RANDOM,
    corrupt,
    interchange,
    patch_locations,
    run_interventions,
)
from tinylang.languages import make_language, parse_language_config
from tinylang.languages.dataset import to_tensors
from tinylang.models import ModelConfig, build_model

with contextlib.redirect_stdout(io.StringIO()):
    import pyvene as pv

LANGUAGE = {"type": "ar", "num_kv": 64, "min_pairs": 4, "max_pairs": 8, "mask_nonquery": True, "seed": 0}
MODEL = {"mixer": "attention", "d_model": 64, "n_layers": 2}
ITEMS = ("query_item_orig", "target_item_orig")
SEED = 0


def setting(examples: int):
    """The test split as tensors, its token classes, and the model."""
    language = make_language(parse_language_config(LANGUAGE | {"splits": {"train": 1, "test": examples}}))
    tensors = to_tensors(language.generate()["test"], mask_nonquery=True)
    torch.manual_seed(SEED)
    model = build_model(ModelConfig(**MODEL), len(language.vocabulary()), tensors.input_ids.shape[1]).eval()
    return tensors, language.token_classes(), model


def sweep(model, tensors, classes, positions, batch_size) -> np.ndarray:
    """``p_patched`` ``(item, layer, component, position, example)`` from ``run_interventions``."""
    table = run_interventions(model, tensors, classes, corrupt_items=ITEMS, positions=positions,
                              batch_size=batch_size, seed=SEED)
    rows = table[table.metric == "p_patched"]  # laid out item, layer, component, position, example
    shape = (len(ITEMS), model.config.n_layers, len(model.components), len(positions), len(tensors))
    return rows.value.to_numpy().reshape(shape)


def sweep_without_table(model, tensors, classes, positions, batch_size, skip_noops=True) -> dict:
    bases = torch.stack([corrupt(tensors, item, classes, SEED + i) for i, item in enumerate(ITEMS)])
    return interchange(model, tensors.input_ids, bases, tensors.lengths, tensors.predicts_answer, tensors.answer,
                       patch_locations(tensors, positions, SEED), batch_size=batch_size, skip_noops=skip_noops)


def sweep_every_cell(model, tensors, classes, positions, batch_size) -> dict:
    return sweep_without_table(model, tensors, classes, positions, batch_size, skip_noops=False)


@torch.no_grad()
def baseline(model, tensors, classes, positions, batch_size) -> np.ndarray:
    """The same ``p_patched``, one new IntervenableModel and one position per call."""
    locations = patch_locations(tensors, positions, SEED)  # the same control positions as the sweep
    layers, components = range(model.config.n_layers), model.components
    out = np.zeros((len(ITEMS), len(layers), len(components), len(positions), len(tensors)), dtype=np.float32)
    for i, item in enumerate(ITEMS):
        corrupted = corrupt(tensors, item, classes, SEED + i)
        for layer in layers:
            for c, component in enumerate(components):
                for p in range(len(positions)):
                    intervenable = pv.IntervenableModel(
                        {"layer": layer, "component": component, "unit": "pos"}, model)
                    intervenable.disable_model_gradients()
                    for idx in batches(len(tensors), batch_size):
                        clean = trimmed(tensors.input_ids[idx], tensors.lengths[idx])
                        base = corrupted[idx, : clean.shape[1]]
                        select = select_mask(base, tensors.predicts_answer[idx])
                        where = [[[int(pos)] for pos in locations[p, idx]]]
                        _, logits = intervenable({"input_ids": base, "select": select},
                                                 [{"input_ids": clean, "select": select}],
                                                 unit_locations={"sources->base": (where, where)})
                        p_answer = logits.float().softmax(-1).gather(-1, tensors.answer[idx, None]).squeeze(-1)
                        out[i, layer, c, p, idx] = p_answer.numpy()
    for param in model.parameters():
        param.requires_grad_(True)
    return out


def timed(fn, *args) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=320, help="test examples in the sweep")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each; best and median are printed")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per batch (both methods)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    tensors, classes, model = setting(args.examples)
    positions = [*tensors.positions, RANDOM]
    n_calls = len(ITEMS) * model.config.n_layers * len(model.components) * len(positions)
    print(f"{len(tensors)} examples (width {tensors.input_ids.shape[1]}), {len(positions)} positions, "
          f"{n_calls} (item, layer, component, position) cells, batch size {args.batch_size}", flush=True)

    fast = sweep(model, tensors, classes, positions, args.batch_size)  # also warms up
    slow = baseline(model, tensors, classes, positions, args.batch_size)
    gap = float(np.abs(fast - slow).max())
    if not gap <= 1e-5:
        raise SystemExit(f"p_patched disagrees: max |sweep - baseline| = {gap:.3g}")
    ran = sweep_without_table(model, tensors, classes, positions, args.batch_size)["ran"]
    print(f"p_patched agrees: max |sweep - baseline| = {gap:.2g} over {fast.size} values; "
          f"the sweep ran {ran.float().mean().item():.1%} of the cells (the rest are no-ops)", flush=True)

    runs = {"run_interventions (batched sweep)": sweep, "interchange (no table)": sweep_without_table,
            "interchange, skip_noops=False": sweep_every_cell, "baseline (model and call per cell)": baseline}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, model, tensors, classes, positions, args.batch_size)[0])
        print(f"repeat {r + 1}: " + ", ".join(f"{t[-1]:.2f}" for t in times.values()) + " s", flush=True)

    print(f"torch {torch.__version__}, pyvene {version('pyvene')}, {args.threads} threads, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    base_times = times["baseline (model and call per cell)"]
    print(f"{'':36s} {'best s':>7s} {'median s':>9s} {'speedup (best, median)':>23s}")
    for name, values in times.items():
        best, median = min(values), statistics.median(values)
        speedup = f"{min(base_times) / best:.1f}x, {statistics.median(base_times) / median:.1f}x"
        print(f"{name:36s} {best:7.2f} {median:9.2f} {speedup:>23s}")


if __name__ == "__main__":
    main()
