"""A compiled train step (the study's ``compile``) trains the same run: the losses of the
eager step up to float rounding, the same checkpoint format, and no change to what Snakemake
re-runs (the choice is read from the job's config, not its params)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from tinylang.config import ConfigError, load_study
from tinylang.languages import parse_language_config, write_language
from tinylang.models import ModelConfig, build_model
from tinylang.stages.job import compile_of
from tinylang.training import TrainConfig, train_run

LANGUAGE = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 4, "seed": 0, "splits": {"train": 64, "test": 8}}
MODELS = {"attention": {}, "mamba": {"d_state": 4}}


@pytest.fixture(scope="module")
def language(tmp_path_factory):
    path = tmp_path_factory.mktemp("ar")
    write_language(parse_language_config(LANGUAGE), path)
    return path


@pytest.mark.parametrize("mixer", sorted(MODELS))
def test_a_compiled_step_trains_the_eager_steps_run(mixer, language, tmp_path):
    # aot_eager traces the blocks as inductor would, then runs the graph op by op: no C compiler needed
    model = ModelConfig(mixer=mixer, d_model=16, n_layers=2, mixer_args=MODELS[mixer])
    train = TrainConfig(lr=3e-3, steps=20, batch_size=8, log_every=1, seed=0)
    for name, backend in (("eager", False), ("compiled", "aot_eager")):
        train_run(model, train, language, tmp_path / name, device="cpu", progress=False, compile=backend)
    eager, compiled = (pd.read_parquet(tmp_path / name / "train_log.parquet") for name in ("eager", "compiled"))
    assert len(eager) == 20
    pd.testing.assert_series_equal(compiled.loss, eager.loss, rtol=1e-5, atol=0)
    weights = [torch.load(tmp_path / name / "checkpoints" / "step20.pt", weights_only=True)["state_dict"]
               for name in ("eager", "compiled")]
    assert list(weights[0]) == list(weights[1])  # the same names: compiling wraps nothing


def test_cuda_graphs_are_refused_off_a_gpu_before_any_work(language, tmp_path):
    with pytest.raises(ValueError, match="cudagraphs needs the model on a CUDA device"):
        build_model(ModelConfig(mixer="attention", d_model=16, n_layers=1), 20, 16).compile_blocks("cudagraphs")
    study = {"study": "s", "device": "cpu", "compile": "cudagraphs", "languages": {"ar": LANGUAGE},
             "models": {"m": {"mixer": "attention", "d_model": 16}}, "runs": {"r": {"language": "ar", "model": "m"}}}
    with pytest.raises(ConfigError, match="compile.*cudagraphs captures CUDA kernels"):
        load_study(study)


def test_the_choice_is_read_from_the_jobs_config_and_validated():
    assert compile_of(SimpleNamespace(config={})) is False
    assert compile_of(SimpleNamespace(config={"compile": "inductor"})) == "inductor"
    with pytest.raises(ValueError, match="compile"):
        compile_of(SimpleNamespace(config={"compile": "inductr"}))
