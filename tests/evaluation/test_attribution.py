"""The paper's Attrib (a ratio of means, with the run filter on the corruption's gap), the
per-example ratio, their summaries, the restoration summary over (corrupted, layer, component,
position), and the per-layer readout of a one-layer model."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from hand_made import (
    HAND,
    HAND_ATTRIB,
    HAND_EXAMPLE_MEDIAN,
    HAND_GAP,
    HAND_LAYER_ATTRIB,
    hand_interventions,
    two_split_interventions,
)

from tinylang.evaluation import attribution_summary, example_attributions
from tinylang.evaluation.attribution import MIN_GAP, attributions, readout_rows, reference_gaps
from tinylang.evaluation.restoration import STATISTICS, restoration_summary


def table(p_clean, p_corrupted, p_patched_by_position):
    """An intervention table with one example per entry of the lists, at layer 1 block_input."""
    rows = []
    for ex, (clean, corrupted) in enumerate(zip(p_clean, p_corrupted)):
        rows += [{"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": -1,
                  "component": "none", "position": "none", "metric": m, "value": v}
                 for m, v in (("p_clean", clean), ("p_corrupted", corrupted))]
        for position, patched in p_patched_by_position.items():
            rows.append({"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": 1,
                         "component": "block_input", "position": position, "metric": "p_patched",
                         "value": patched[ex]})
    return pd.DataFrame(rows)


def test_attrib_is_the_restored_share_and_excludes_unharmed_examples():
    df = table([0.9, 0.5, 0.4], [0.1, 0.5, 0.6], {"target_item_orig": [0.5, 0.7, 0.5]})
    attrib = example_attributions(df).set_index("example").attrib
    assert attrib[0] == pytest.approx(0.5)
    assert math.isnan(attrib[1]) and math.isnan(attrib[2])  # corruption did not lower p


def test_summary_reports_attrib_gap_and_the_per_example_median_iqr_and_exclusions_per_readout():
    df = table([1.0] * 4 + [0.2], [0.0] * 4 + [0.3],
               {"query_item_orig": [0, 0, 0, 0, 0], "target_item_orig": [1.0, 0.9, 0.8, 0.7, 0.0],
                "query_item": [0.1, 0.0, 0.0, 0.0, 0.0]})
    summary = attribution_summary(df).pivot_table(index="readout", columns="statistic", values="value")
    gap = (4.2 / 5) - (0.3 / 5)  # mean p_clean - mean p_corrupted over all five examples
    assert summary.loc["@Value", "gap"] == pytest.approx(gap) and (summary["kept"] == 1.0).all()
    assert summary.loc["@Value", "attrib"] == pytest.approx((3.4 / 5 - 0.3 / 5) / gap)
    assert summary.loc["@Key", "attrib"] == pytest.approx((0 - 0.3 / 5) / gap)  # patching hurt: negative
    assert summary.loc["@Value", "attrib_example_median"] == pytest.approx(0.85)
    assert summary.loc["@Value", "attrib_example_q25"] == pytest.approx(0.775)
    assert summary.loc["@Key", "attrib_example_median"] == 0
    assert summary.loc["@Query", "attrib_example_q75"] == pytest.approx(0.025)
    assert (summary["n"] == 4).all() and (summary["excluded"] == 1).all()


# --- the paper's Attrib by hand --------------------------------------------------------------

def test_attrib_is_a_ratio_of_means_and_the_run_filter_drops_a_run_without_a_gap():
    attrib = attributions(hand_interventions())
    headline = readout_rows(attrib).set_index(["run", "readout"])
    assert MIN_GAP == 0.01
    for run in HAND:
        row = headline.loc[(run, "@Value")]
        assert row["layer"] == 1 and row["gap"] == pytest.approx(HAND_GAP[run], abs=1e-6)
        assert row["attrib"] == pytest.approx(HAND_ATTRIB[run], rel=1e-4)
        assert row["kept"] == (run != "flat")
        assert headline.loc[(run, "@Query"), "attrib"] == 0.0  # a no-op restores nothing
    assert headline.loc[("over", "@Value"), "attrib"] > 1 and headline.loc[("hurts", "@Value"), "attrib"] < 0
    for run, median in HAND_EXAMPLE_MEDIAN.items():
        assert headline.loc[(run, "@Value"), "attrib_example_median"] == pytest.approx(median, rel=1e-4)
    assert headline.loc[("hurts", "@Value"), "attrib_example_median"] > 0  # the median hides the average harm
    layers = readout_rows(attrib, component="mixer_output", layer=-1).set_index(["run", "layer", "readout"])
    for (run, layer), value in HAND_LAYER_ATTRIB.items():
        assert layers.loc[(run, layer, "@Query"), "attrib"] == pytest.approx(value, rel=1e-4, abs=1e-6)
    gaps = reference_gaps(hand_interventions()).set_index("run")
    assert gaps["kept"].to_dict() == {"over": True, "hurts": True, "flat": False}
    assert not reference_gaps(hand_interventions(), min_gap=0.2).set_index("run").loc["hurts", "kept"]  # 0.1425


def test_a_position_some_examples_lack_averages_over_the_examples_that_have_it():
    df = table([0.9, 0.5], [0.1, 0.3], {"random": [0.5, float("nan")]})
    row = attributions(df).iloc[0]
    assert row["n"] == 1 and row["gap"] == pytest.approx(0.8) and row["attrib"] == pytest.approx(0.5)
    assert row["kept"]  # the run's gap over both examples, 0.5


def test_a_one_layer_model_reads_something_real_at_the_mixer_output_of_the_query(tmp_path):
    """Headline readout of a one-layer model: block_input of its only layer, the embedding, where
    @Query is a no-op by construction. The per-layer readout (mixer_output at the query) is the
    one place the context reaches the answer-predicting position: patching it restores the clean
    prediction exactly (Attrib 1), whatever the model learnt. (This model is untrained, so its
    gap is about 0 and the run filter would drop it; the ratio is still 1.)"""
    from tinylang.evaluation import run_interventions
    from tinylang.languages import load_tensors, parse_language_config, read_meta, write_language
    from tinylang.models import ModelConfig, build_model

    write_language(parse_language_config({"type": "ar", "num_kv": 24, "min_pairs": 2, "max_pairs": 5, "seed": 1,
                                          "splits": {"train": 8, "test": 24}}), tmp_path)
    meta, tensors = read_meta(tmp_path), load_tensors(tmp_path, "test")
    torch.manual_seed(0)
    model = build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), len(meta["vocabulary"]), 32).eval()
    with torch.no_grad():  # louder mixer: at init the residual stream barely hears the context
        model.layers[0].mixer.out_proj.weight.mul_(20)
    table = run_interventions(model, tensors, meta["token_classes"], corrupt_items=["query_item_orig"],
                              positions=["query_item"], components=["block_input", "mixer_output"])
    per_example = example_attributions(table).set_index(["component", "example"])
    embedding, mixer = per_example.loc["block_input"], per_example.loc["mixer_output"]
    assert (embedding["p_patched"] == embedding["p_corrupted"]).all()  # the no-op
    assert (mixer["p_patched"] != mixer["p_corrupted"]).mean() > 0.9
    assert mixer["p_patched"].to_numpy() == pytest.approx(mixer["p_clean"].to_numpy(), abs=1e-5)
    attrib = attributions(table).set_index("component")
    restored = attrib.loc["mixer_output", "p_patched"] - attrib.loc["mixer_output", "p_corrupted"]
    assert restored == pytest.approx(attrib.loc["mixer_output", "gap"], abs=1e-6)  # Attrib's numerator = its denominator
    assert attrib.loc["block_input", "attrib"] == 0.0


def patch_table(p_clean, p_corrupted, p_diff, kl=None, **extra):
    """A full intervention table: ``p_diff[layer][position]`` lists one value per example;
    ``p_patched = p_corrupted + p_diff`` and ``kl`` (same layout) as given."""
    rows = []
    for ex, (clean, corrupted) in enumerate(zip(p_clean, p_corrupted)):
        rows += [{"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": -1,
                  "component": "none", "position": "none", "metric": m, "value": v}
                 for m, v in (("p_clean", clean), ("p_corrupted", corrupted))]
        for layer, by_position in p_diff.items():
            for position, diffs in by_position.items():
                values = {"p_diff": diffs[ex], "p_patched": corrupted + diffs[ex]}
                if kl is not None:
                    values["kl_patched_corrupted"] = kl[layer][position][ex]
                rows += [{"example": ex, "query_type": "KEY", "corrupted": "query_item_orig", "layer": layer,
                          "component": "block_input", "position": position, "metric": m, "value": v}
                         for m, v in values.items()]
    return pd.DataFrame(rows).assign(**extra)


def stats(summary):
    return summary.set_index(["layer", "position", "statistic"]).value


def test_restoration_summary_statistics():
    nan = float("nan")
    df = patch_table([0.9, 0.9, 0.5, 0.8], [0.1, 0.5, 0.5, 0.0],
                     {0: {"a": [0.4, 0.2, 0.1, 0.8], "b": [0.0, 0.4, 0.0, nan]}},
                     kl={0: {"a": [1.0, 2.0, 3.0, 6.0], "b": [0.0, 0.5, 0.0, nan]}})
    summary = restoration_summary(df)
    assert list(summary.columns) == ["corrupted", "layer", "component", "position", "statistic", "value"]
    s = stats(summary)
    assert s[0, "a", "p_diff_mean"] == pytest.approx(0.375) and s[0, "a", "p_diff_median"] == pytest.approx(0.3)
    assert s[0, "a", "kl_patched_corrupted_mean"] == pytest.approx(3.0)
    # Attrib (ratio of means): mean p_diff 0.375 over the gap 0.775 - 0.275
    assert s[0, "a", "gap"] == pytest.approx(0.5) and s[0, "a", "attrib"] == pytest.approx(0.375 / 0.5)
    # b: example 3 has no value, so the means are over examples 0-2: gap 0.7667 - 0.3667
    assert s[0, "b", "attrib"] == pytest.approx((0.4 / 3) / (2.3 / 3 - 1.1 / 3))
    # per-example ratio: 0.4/0.8, 0.2/0.4, excluded (no harm), 0.8/0.8
    assert s[0, "a", "attrib_example_mean"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert s[0, "a", "attrib_example_median"] == pytest.approx(0.5)
    assert s[0, "a", "n"] == 4 and s[0, "a", "n_attrib"] == 3 and s[0, "b", "n_attrib"] == 2
    assert s[0, "b", "p_diff_mean"] == pytest.approx(0.4 / 3)  # NaN left out
    assert s[0, "b", "attrib_example_mean"] == pytest.approx((0.0 + 1.0) / 2)
    # largest p_diff per example: a, b, a, a (b is NaN there)
    assert s[0, "a", "share_max_position"] == pytest.approx(3 / 4)
    assert s[0, "b", "share_max_position"] == pytest.approx(1 / 4)
    assert s[0, "a", "share_max_layer"] == 1.0 and s[0, "b", "share_max_layer"] == 1.0  # one layer
    assert set(summary.statistic) == set(STATISTICS)


def test_restoration_summary_shares_ties_and_skips_examples_without_values():
    nan = float("nan")
    df = patch_table([1.0] * 4, [0.0] * 4, {
        0: {"a": [0.5, 0.2, 0.0, nan], "b": [0.1, 0.2, 0.3, nan], "c": [0.0, 0.0, nan, nan]},
        1: {"a": [0.6, 0.2, 0.0, 0.1], "b": [0.1, 0.1, 0.3, 0.1], "c": [0.0, 0.3, 0.3, 0.1]},
    })
    s = stats(restoration_summary(df))  # no KL rows: no KL statistic
    assert "kl_patched_corrupted_mean" not in set(s.index.get_level_values("statistic"))
    # Layer 0: example 1 ties a and b (1/2 each); example 3 has no finite p_diff and is not counted.
    assert [s[0, p, "share_max_position"] for p in "abc"] == pytest.approx([1.5 / 3, 1.5 / 3, 0.0])
    # Layer 1: ex 0 -> a; ex 1 -> c; ex 2 ties b, c; ex 3 ties a, b, c.
    assert [s[1, p, "share_max_position"] for p in "abc"] == pytest.approx(
        [(1 + 1 / 3) / 4, (0.5 + 1 / 3) / 4, (1 + 0.5 + 1 / 3) / 4])
    # Over layers at position a: 0.5<0.6, tie 0.2, tie 0.0, NaN<0.1 -> layer 0 gets 1/2 + 1/2 of 4.
    assert s[0, "a", "share_max_layer"] == pytest.approx(1 / 4) and s[1, "a", "share_max_layer"] == pytest.approx(3 / 4)
    # Position c: a tie (0.0, 0.0), then layer 1 (0.3 > 0.0; 0.3, 0.1 against NaN).
    assert s[0, "c", "share_max_layer"] == pytest.approx(0.5 / 4) and s[1, "c", "share_max_layer"] == pytest.approx(3.5 / 4)
    for over in ("position", "layer"):
        level = "layer" if over == "position" else "position"
        totals = s.xs(f"share_max_{over}", level="statistic").groupby(level=level).sum()
        assert totals.to_numpy() == pytest.approx(1.0)


def test_restoration_summary_keeps_runs_and_steps_apart():
    one = patch_table([1.0, 1.0], [0.0, 0.0], {0: {"a": [0.2, 0.4], "b": [0.3, 0.1]}}, run="x", step=5)
    two = patch_table([1.0, 1.0], [0.0, 0.0], {0: {"a": [0.9, 0.9], "b": [0.0, 0.0]}}, run="y", step=7)
    summary = restoration_summary(pd.concat([one, two], ignore_index=True))
    assert list(summary.columns[:2]) == ["run", "step"]
    s = summary.set_index(["run", "step", "position", "statistic"]).value
    assert s["x", 5, "a", "p_diff_mean"] == pytest.approx(0.3) and s["y", 7, "a", "p_diff_mean"] == pytest.approx(0.9)
    assert s["x", 5, "a", "share_max_position"] == 0.5 and s["y", 7, "a", "share_max_position"] == 1.0


def test_the_study_figures_read_the_readouts_defined_here():
    from tinylang.evaluation import attribution as at
    from tinylang.figures import study_plots as sp

    assert (sp.HEADLINE_COMPONENT, sp.HEADLINE_CORRUPTED, sp.LAYER_COMPONENT, sp.LAYER_READOUT) == (
        at.HEADLINE_COMPONENT, at.HEADLINE_CORRUPTED, at.LAYER_COMPONENT, at.LAYER_READOUT)
    assert set(sp.READOUTS) == set(at.READOUTS)


def test_splits_are_never_pooled_though_their_examples_share_indices():
    headline = readout_rows(attributions(two_split_interventions())).set_index(["split", "readout"])
    for split, name in (("dev", "over"), ("test", "hurts")):
        row = headline.loc[(split, "@Value")]
        assert row["attrib"] == pytest.approx(HAND_ATTRIB[name], rel=1e-4)
        assert row["attrib_example_median"] == pytest.approx(HAND_EXAMPLE_MEDIAN[name], rel=1e-4)
        assert row["gap"] == pytest.approx(HAND_GAP[name], abs=1e-6) and row["n"] == 4
    gaps = reference_gaps(two_split_interventions(test="flat")).set_index("split")
    assert gaps["kept"].to_dict() == {"dev": True, "test": False}
