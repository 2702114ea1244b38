"""Small intervention and study tables made by hand, with their Attrib computed by hand: shared
by the tests of attribution (tests/evaluation), study tables (tests/study) and study figures
(tests/figures)."""

from __future__ import annotations

import pandas as pd

from tinylang.study import build_study_tables

# run -> (p_clean, p_corrupted, {(component, layer, position): p_patched}); four examples each, a
# 2-layer model; unlisted readouts are no-ops (p_patched = p_corrupted). Attrib is computed by hand
# in HAND_ATTRIB.
HAND = {
    # over-restores: Attrib above 1 at the last layer's block_input @Value
    "over": ([0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.2],
             {("block_input", 1, "target_item_orig"): [0.95, 0.9, 0.85, 0.9],
              ("block_input", 0, "target_item_orig"): [0.1, 0.2, 0.3, 0.2],
              ("mixer_output", 0, "query_item"): [0.5, 0.4, 0.5, 0.4],
              ("mixer_output", 1, "query_item"): [0.9, 0.8, 0.7, 0.6]}),
    # patching hurts on average (negative Attrib) while the per-example median is positive
    "hurts": ([0.5, 0.5, 0.5, 0.5], [0.4, 0.45, 0.48, 0.1],
              {("block_input", 1, "target_item_orig"): [0.42, 0.47, 0.49, 0.0]}),
    # the corruption barely matters: gap 0.00125 <= 0.01, dropped by the run filter
    "flat": ([0.30, 0.31, 0.29, 0.30], [0.30, 0.30, 0.30, 0.295],
             {("block_input", 1, "target_item_orig"): [0.31, 0.30, 0.30, 0.30]}),
}
HAND_GAP = {"over": 0.75 - 0.2, "hurts": 0.5 - 0.3575, "flat": 0.30 - 0.29875}
HAND_ATTRIB = {  # at block_input, last layer (1), @Value: (mean p_patched - mean p_corrupted) / gap
    "over": (0.9 - 0.2) / 0.55,  # 1.273
    "hurts": (0.345 - 0.3575) / 0.1425,  # -0.088
    "flat": (0.3025 - 0.29875) / 0.00125,  # 3.0: noise over noise, which the filter drops
}
HAND_EXAMPLE_MEDIAN = {"over": (0.7 / 0.6 + 0.55 / 0.4) / 2, "hurts": (0.2 + 0.4) / 2}  # "hurts": .2 .4 .5 -.25
HAND_LAYER_ATTRIB = {("over", 0): (0.45 - 0.2) / 0.55, ("over", 1): 1.0, ("hurts", 0): 0.0}  # mixer_output @Query


def hand_interventions(runs=tuple(HAND), step=100):
    """An interventions table (as the workflow concatenates them) of the HAND runs."""
    rows = []
    for run in runs:
        clean, corrupted, patched = HAND[run]
        for ex in range(4):
            base = {"run": run, "step": step, "split": "test", "example": ex, "query_type": "KEY",
                    "corrupted": "query_item_orig"}
            rows += [{**base, "layer": -1, "component": "none", "position": "none", "metric": m, "value": v}
                     for m, v in (("p_clean", clean[ex]), ("p_corrupted", corrupted[ex]))]
            for component in ("block_input", "mixer_output"):
                for layer in (0, 1):
                    for position in ("query_item_orig", "target_item_orig", "query_item", "random"):
                        p = patched.get((component, layer, position), corrupted)[ex]
                        rows += [{**base, "layer": layer, "component": component, "position": position,
                                  "metric": m, "value": v} for m, v in (("p_patched", p), ("p_diff", p - corrupted[ex]))]
    return pd.DataFrame(rows).astype({"value": "float32"})


def two_split_interventions(dev="over", test="hurts", run="x"):
    """One run evaluated on dev (as the HAND run ``dev``) and on test (as ``test``): the splits
    share example indices 0..3, as the workflow's interventions on two splits do."""
    frames = [hand_interventions((name,)).assign(run=run, split=split) for split, name in (("dev", dev), ("test", test))]
    return pd.concat(frames, ignore_index=True)


HAND_COORDS = {  # the HAND runs, plus a run that failed
    "over": ("attention", 0.001), "hurts": ("attention", 0.01), "flat": ("mamba", 0.001), "broken": ("mamba", 0.01)}
HAND_ACCURACY = {"over": 0.9, "hurts": 0.5, "flat": 0.2}


def hand_study_tables(tmp_path, min_gap=None):
    runs = [{"run": run, "language": "ar", "mixer": mixer, "d_model": 16, "n_layers": 2, "pos_embed": False,
             "lr": lr, "seed": 0} for run, (mixer, lr) in HAND_COORDS.items()]
    behaviour = pd.DataFrame([{"run": run, "step": 100, "split": "test", "query_type": "ALL", "metric": "accuracy",
                               "value": value, "n": 4} for run, value in HAND_ACCURACY.items()])
    behaviour.to_parquet(tmp_path / "behaviour.parquet")
    hand_interventions(("over", "hurts", "flat")).to_parquet(tmp_path / "interventions.parquet")
    statuses = [{"run": run, "status": "ok"} for run in HAND_ACCURACY]
    statuses.append({"run": "broken", "status": "failed", "step": 40, "lr": 0.01, "reason": "loss is nan"})
    return build_study_tables(runs, {"ar": ["train", "test"]}, [tmp_path / "behaviour.parquet"],
                              [tmp_path / "interventions.parquet"], statuses, min_gap=min_gap)
