"""Every evaluator declares its table's columns and dtypes (``Evaluator.columns``): its tables
have exactly those, and the evaluate stage writes them, empty, for a checkpoint a failed run
never wrote, without loading any checkpoint."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from tinylang.evaluation.evaluators import EVALUATORS, empty_table
from tinylang.languages import load_tensors, parse_language_config, read_meta, write_language
from tinylang.models import ModelConfig, build_model, save_checkpoint
from tinylang.stages import EvaluateSpec, evaluate
from tinylang.stages.evaluate import RUN_COLUMNS
from tinylang.training.status import write_run_status

LANGUAGES = {
    "ar": {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 8, "test": 24}},
    # several query types: pandas' groupby would give behaviour's means another dtype than for one
    "atr": {"type": "atr", "num_terminals": 8, "num_nonterminals": 4, "max_rhs_len": 3, "max_rules_per_nt": 3,
            "max_depth": 4, "max_length": 60, "no_sibling_queries": True, "seed": 0,
            "splits": {"train": 8, "test": 24}},
}
OPTIONS = {"num_examples": 24, "batch_size": 7}


@pytest.fixture(scope="module", params=sorted(LANGUAGES))
def language(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    write_language(parse_language_config(LANGUAGES[request.param]), path)
    return path


@pytest.fixture(scope="module")
def untrained(language):
    torch.manual_seed(0)
    max_len = int(load_tensors(language, "test").input_ids.shape[1])
    return build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), len(read_meta(language)["vocabulary"]),
                       max_len)


def dtypes(table: pd.DataFrame) -> list[tuple[str, str]]:
    return [(name, str(dtype)) for name, dtype in table.dtypes.items()]


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_an_evaluators_table_has_the_columns_and_dtypes_it_declares(name, language, untrained):
    evaluator = EVALUATORS.get(name)
    options = evaluator.Options(**OPTIONS)
    tensors = load_tensors(language, "test")
    if language.name.startswith("atr"):
        assert len(set(tensors.query_type)) > 1, "the ATR fixture should have several query types"
    table = evaluator.run(untrained, tensors, read_meta(language), options)
    assert len(table)
    assert dtypes(table) == dtypes(empty_table(evaluator.columns(options)))


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_a_failed_runs_missing_checkpoint_gets_the_declared_columns_without_loading_one(name, language, untrained,
                                                                                         tmp_path):
    failed, ok = tmp_path / "failed", tmp_path / "ok"
    (failed / "checkpoints").mkdir(parents=True)  # not even the first checkpoint: nothing to load
    write_run_status({"run": "failed", "status": "failed", "step": 3, "lr": 1.0, "reason": "loss is nan",
                      "checkpoints": [0]}, failed / "status.json")
    spec = EvaluateSpec.build("failed", 10, {name: OPTIONS}, failed / "checkpoints", language, failed / "eval",
                              status=failed / "status.json", device="cpu")
    table = evaluate(spec)[name]
    expected = empty_table({**RUN_COLUMNS, **EVALUATORS.get(name).columns(spec.evaluators[name])})
    pd.testing.assert_frame_equal(table, expected)
    pd.testing.assert_frame_equal(pd.read_parquet(spec.table(name)), expected)

    save_checkpoint(ok / "checkpoints" / "step10.pt", untrained, 10)
    written = evaluate(EvaluateSpec.build("ok", 10, {name: OPTIONS}, ok / "checkpoints", language, ok / "eval",
                                          device="cpu"))[name]
    assert len(written) and dtypes(written) == dtypes(table)
    assert dtypes(pd.read_parquet(ok / "eval" / f"{name}.parquet")) == dtypes(pd.read_parquet(spec.table(name)))
