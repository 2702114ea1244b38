"""Stage specs: built once from a rule's job, typed, and refusing bad input before any work."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from tinylang.evaluation.evaluators import InterventionOptions
from tinylang.models import ModelConfig
from tinylang.stages import EvaluateSpec, FigureSpec, LanguageSpec, StudyFigureSpec, StudyTablesSpec, TrainSpec
from tinylang.training import TrainConfig


class Names(list):
    """A Snakemake-like named list: attributes by name, iteration over every file (a named
    group of several is flattened, as Snakemake's are)."""

    def __init__(self, **named):
        super().__init__(v for value in named.values() for v in (value if isinstance(value, list) else [value]))
        self.__dict__.update(named)

    def items(self):
        return {k: v for k, v in self.__dict__.items()}.items()


def job(input=None, output=None, params=None, wildcards=None, threads=1, log=("x.log",)):
    return SimpleNamespace(input=input or Names(), output=output or Names(), params=SimpleNamespace(**(params or {})),
                           wildcards=SimpleNamespace(**(wildcards or {})), threads=threads, log=list(log))


def train_job(tmp_path, **train):
    return job(input=Names(language=str(tmp_path / "lang")),
               output=Names(checkpoints=str(tmp_path / "ck"), log=str(tmp_path / "log.parquet"),
                            status=str(tmp_path / "status.json")),
               params={"model": {"mixer": "attention", "d_model": 16, "n_layers": 1},
                       "train": {"steps": 10, **train}, "device": "cpu"},
               wildcards={"run": "r"}, threads=2)


def test_the_train_spec_holds_typed_configs_and_the_jobs_paths(tmp_path):
    spec = TrainSpec.from_job(train_job(tmp_path, lr=0.003))
    assert isinstance(spec.model, ModelConfig) and isinstance(spec.train, TrainConfig) and spec.train.lr == 0.003
    assert spec.run == "r" and spec.threads == 2 and spec.device == "cpu" and spec.log == Path("x.log")
    assert spec.checkpoints_dir == tmp_path / "ck" and spec.status == tmp_path / "status.json"


def test_a_bad_train_config_is_refused_when_the_spec_is_built(tmp_path):
    with pytest.raises(ValidationError, match="lr"):
        TrainSpec.from_job(train_job(tmp_path, lr=-1))
    assert not any(tmp_path.iterdir())  # nothing was written


def test_the_evaluate_spec_validates_each_evaluators_options(tmp_path):
    def evaluate_job(options):
        return job(input=Names(checkpoints="ck", status="s.json", language="lang"), output=Names(out="eval/step30"),
                   params={"evaluators": {"behaviour": None, "interventions": options}, "cache": "cache",
                           "device": "cpu"},
                   wildcards={"run": "r", "step": "30"})

    spec = EvaluateSpec.from_job(evaluate_job({"num_examples": 8}))
    assert list(spec.evaluators) == ["behaviour", "interventions"] and spec.step == 30
    assert isinstance(spec.evaluators["interventions"], InterventionOptions)
    assert spec.evaluators["interventions"].num_examples == 8
    assert spec.table("probes") == Path("eval/step30/probes.parquet") and spec.cache_dir == Path("cache")
    with pytest.raises(ValidationError, match="num_exampels"):
        EvaluateSpec.from_job(evaluate_job({"num_exampels": 8}))
    with pytest.raises(ValueError, match="no evaluator is scheduled at step 7"):
        EvaluateSpec.build("r", 7, {}, Path("ck"), Path("lang"), Path("eval/step7"))


def test_the_language_spec_parses_the_language_config():
    spec = LanguageSpec.from_job(job(output=Names(out="lang"), params={
        "config": {"type": "ar", "num_kv": 8, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 4}}}))
    assert spec.config.type == "ar" and spec.out_dir == Path("lang")
    with pytest.raises(ValidationError):
        LanguageSpec.from_job(job(output=Names(out="lang"), params={"config": {"type": "ar", "num_kv": -1}}))


def figure_outputs(name):
    return Names(png=f"{name}.png", pdf=f"{name}.pdf", table=f"{name}.parquet")


def test_figure_specs_name_their_inputs_and_refuse_an_unknown_figure():
    spec = FigureSpec.from_job(job(input=Names(logs=["a.parquet", "b.parquet"]), output=figure_outputs("curves"),
                                   params={"names": ["a", "b"]}), "training_curves")
    assert spec.inputs == {"a": Path("a.parquet"), "b": Path("b.parquet")} and spec.table_out == Path("curves.parquet")
    assert spec.figure_outs == [Path("curves.png"), Path("curves.pdf")]
    accuracy = FigureSpec.from_job(job(input=Names(tables=["r/eval/step0", "r/eval/step9"]),
                                       output=figure_outputs("accuracy")), "accuracy")
    assert accuracy.inputs == [Path("r/eval/step0/behaviour.parquet"), Path("r/eval/step9/behaviour.parquet")]
    with pytest.raises(ValueError, match="labels its inputs"):
        FigureSpec("training_curves", [Path("a.parquet")], Path("t"), [])
    with pytest.raises(ValueError, match="allowed: .*training_curves"):
        FigureSpec("curvez", [], Path("t"), [])
    with pytest.raises(ValueError, match="mechanism_by_<column>"):
        StudyFigureSpec("mechanism_boxez", Path("t"), Path("o"), [])
    assert StudyFigureSpec("mechanism_by_d_model", Path("t"), Path("o"), []).figure == "mechanism_by_d_model"


def test_the_study_tables_spec_reads_every_group_of_the_job():
    spec = StudyTablesSpec.from_job(job(
        input=Names(behaviour=["eval/step3"], interventions=[], status=["s.json"]),
        output=Names(runs="runs.parquet", selection="selection.parquet"),
        params={"coords": [{"run": "r"}], "splits": {"ar": ["train", "test"]}}))
    assert spec.outputs == {"runs": Path("runs.parquet"), "selection": Path("selection.parquet")}
    assert spec.behaviour == [Path("eval/step3/behaviour.parquet")] and spec.interventions == []
    assert spec.status_files == [Path("s.json")]
