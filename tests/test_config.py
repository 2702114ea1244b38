"""The study config is validated once, with errors that name the field and the allowed values."""

from __future__ import annotations

import copy
import re
from unittest import mock

import pytest
import yaml
from conftest import REPO, snakemake_summary

from tinylang.config import ConfigError, load_study


def test_default_study_is_valid():
    study = load_study(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    assert set(study.runs) == {"attention", "mamba"}
    run = study.run("attention")
    assert run.checkpoint_steps[0] == 0 and run.checkpoint_steps[-1] == run.total_steps


def test_run_resolves_training_defaults_and_overrides(tiny_study):
    tiny_study["runs"]["mamba"]["train"] = {"lr": 0.01}
    study = load_study(tiny_study)
    assert study.run("attention").train.lr == 0.003
    assert study.run("mamba").train.lr == 0.01
    assert study.run("mamba").checkpoint_steps == [0, 6, 12]


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["models"]["attention"].update(mixer="transformr"), ["models.attention.mixer", "transformr", "allowed:", "mamba"]),
        (lambda c: c["training"].update(lr=-0.1), ["lr", "greater than 0"]),
        (lambda c: c["languages"]["ar"].update(num_kv=15), ["languages.ar.num_kv", "even"]),
        (lambda c: c["runs"]["mamba"].update(language="nope"), ["runs.mamba.language", "'nope'", "ar"]),
        (lambda c: c["models"]["mamba"]["mixer_args"].update(d_sate=4),
         ["mixer_args: unknown key(s) 'd_sate' (did you mean 'd_state'?)"]),
        (lambda c: c.update(device="tpu"), ["device", "'auto'", "'cuda'"]),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(tiny_study, edit, expected):
    edit(tiny_study)
    with pytest.raises(ConfigError) as err:
        load_study(tiny_study)
    for fragment in expected:
        assert fragment in str(err.value)


def test_checkpoint_selection_must_name_saved_steps(tiny_study):
    tiny_study["evaluators"]["interventions"]["checkpoints"] = [7]
    with pytest.raises(ConfigError, match=r"evaluators.interventions.checkpoints: \[7\] are not saved"):
        load_study(tiny_study)


def test_evaluators_are_validated_by_name_and_options(tiny_study):
    tiny_study["evaluators"] = {"behavior": {}, "interventions": {"num_exampls": 3}, "probes": {"l2": -1}}
    with pytest.raises(ConfigError) as err:
        load_study(tiny_study)
    message = str(err.value)
    assert "evaluators.behavior: unknown evaluator 'behavior'; allowed: attention, behaviour" in message
    assert "evaluators.interventions: unknown key(s) 'num_exampls' (did you mean 'num_examples'?)" in message
    assert "evaluators.probes.l2" in message


def test_evaluators_apply_only_where_they_can(tiny_study):
    tiny_study["evaluators"] = {"behaviour": None, "attention": {"checkpoints": "all"}}
    study = load_study(tiny_study)
    assert study.evaluators_for("attention") == ["behaviour", "attention"]
    assert study.evaluators_for("mamba") == ["behaviour"]  # Mamba has no attention probabilities
    assert study.eval_steps("attention", "attention") == [0, 6, 12]
    assert study.evaluator_options("behaviour").splits is None


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["training"].update(lrr=0.1), "  training: unknown key(s) 'lrr' (did you mean 'lr'?); allowed: batch_size"),
    (lambda c: c.update(evaluatorz={}), "unknown key(s) 'evaluatorz' (did you mean 'evaluators'?)"),
    (lambda c: c["evaluators"]["behaviour"].update(splits=["tset"]),
     "evaluators.behaviour.splits: ['tset'] not among language 'ar''s splits (train, test)"),
    (lambda c: c["evaluators"]["interventions"].update(splits=["dev"]),
     "evaluators.interventions.splits: ['dev'] not among language 'ar''s splits (train, test)"),
    (lambda c: c["evaluators"]["probes"].update(components=["block_outptu"]),
     "evaluators.probes.components: ['block_outptu'] are not hook points"),
    (lambda c: c["evaluators"]["probes"].update(targets=["query_itme"]), "did you mean 'query_item'?"),
    (lambda c: c["models"]["attention"].update(d_model=18, mixer_args={"n_heads": 4}),
     "models.attention: mixer_args: d_model (18) must be divisible by n_heads (4)"),
    (lambda c: c["models"]["attention"].update(d_model=1_000_000),
     "models.attention.d_model: 1000000 × 1 layers takes at least 14,901.2 GiB to train"),
    (lambda c: c["languages"]["ar"]["splits"].update(train=10**9), "languages.ar: generating it takes at least 93.1 GiB"),
    (lambda c: c["languages"]["ar"].update(num_kv=10**9), "languages.ar: generating it takes at least 59.6 GiB"),
    (lambda c: c["training"].update(warmup_steps=50),
     "training.warmup_steps (50) exceeds the run's 12 steps (runs attention, mamba)"),
    (lambda c: c["training"].update(checkpoints=[6, 40]),
     "training.checkpoints [40] lie past the run's last step (12) (runs attention, mamba)"),
])
def test_mistakes_only_a_run_would_show_are_refused_with_the_study(tiny_study, edit, message):
    """Each of these used to surface only in a job (or never: checkpoints past the end were
    dropped silently); now the study refuses them, naming the field, before anything runs."""
    edit(tiny_study)
    with mock.patch("tinylang.config.machine_memory_bytes", return_value=24 * 2**30), \
            pytest.raises(ConfigError) as err:
        load_study(tiny_study)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "edit, field",
    [
        (lambda c: c["models"]["attention"].update(mixer="transformr"), "models.attention.mixer"),
        (lambda c: c["training"].update(lr=-1), "lr"),
        (lambda c: c["languages"]["ar"].update(num_kv=7), "languages.ar.num_kv"),
        (lambda c: c["evaluators"]["behaviour"].update(splits=["tset"]), "evaluators.behaviour.splits"),
    ],
)
def test_snakemake_stops_before_any_job_on_a_bad_config(tmp_path, tiny_study, edit, field):
    edit(tiny_study)
    with pytest.raises(SystemExit) as stop:  # while Snakemake reads the Snakefile, before any planning
        snakemake_summary(tmp_path, tiny_study)
    assert str(stop.value.code).startswith("tinylang: ") and field in str(stop.value.code)
    assert not (tmp_path / "results").exists()


def test_schema_file_is_generated_from_the_config_model():
    from tinylang.config import json_schema

    committed = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    assert committed == json_schema(), "config/schema.yaml is stale: run `tinylang schema -o config/schema.yaml`"


def test_default_study_passes_snakemakes_schema_validation():
    from snakemake.utils import validate

    validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), str(REPO / "config" / "schema.yaml"))


def test_a_language_can_name_a_config_in_the_language_library(tmp_path, tiny_study):
    library = tmp_path / "languages"
    library.mkdir()
    (library / "tiny_ar.yaml").write_text(yaml.safe_dump(tiny_study["languages"]["ar"]))
    tiny_study["languages"]["ar"] = "tiny_ar"
    study = load_study(tiny_study, language_library=library)
    assert study.languages["ar"].num_kv == 16
    tiny_study["languages"]["ar"] = "tiny_arr"
    with pytest.raises(ConfigError, match=r"languages\.ar: no language config .*tiny_arr\.yaml; available: tiny_ar"):
        load_study(tiny_study, language_library=library)


SWEEP = {
    "model": {"n_layers": 1, "pos_embed": False, "mixer_args": {}},
    "train": {"steps": 12},
    "grid": {"language": ["ar"], "mixer": ["attention", "mamba"], "d_model": [8, 16],
             "lr": [0.001, 0.003], "seed": [0, 1]},
    "per_mixer": {"attention": {"pos_embed": True}, "mamba": {"mixer_args.d_state": 4, "state_mixer": "none"}},
    "exclude": [{"mixer": "mamba", "d_model": 8}],
}


def test_a_sweep_expands_to_named_runs(tiny_study):
    tiny_study["sweep"] = copy.deepcopy(SWEEP)
    study = load_study(tiny_study)
    swept = [name for name in study.run_names if name not in tiny_study["runs"]]
    assert len(swept) == 2 * 2 * 2 * 2 - 4  # mamba at width 8 excluded
    assert swept[0] == "ar-attention-d8-lr0.001-s0"
    run = study.run("ar-mamba-d16-lr0.003-s1")
    assert run.model.mixer_args["d_state"] == 4 and run.model.state_mixer == "none" and not run.model.pos_embed
    assert run.train.lr == 0.003 and run.train.seed == 1 and run.total_steps == 12
    assert study.run("ar-attention-d16-lr0.003-s1").model.pos_embed  # the per-mixer override
    assert run.coords() == {"run": run.name, "language": "ar", "mixer": "mamba", "d_model": 16, "n_layers": 1,
                            "pos_embed": False, "lr": 0.003, "seed": 1}


def test_adding_a_value_to_an_axis_renames_no_run(tiny_study):
    tiny_study["sweep"] = copy.deepcopy(SWEEP)
    before = load_study(tiny_study).run_names
    tiny_study["sweep"]["grid"]["lr"] = [0.001, 0.003, 0.01]
    after = load_study(tiny_study).run_names
    assert set(before) < set(after) and len(after) - len(before) == 6


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s["grid"].update(widht=[8]), "unknown sweep key 'widht'"),
        (lambda s: s["grid"].update(language=["arr"]), "sweep.grid.language: ['arr'] not among the languages"),
        (lambda s: s["per_mixer"].update(based={}), "per_mixer names mixer(s) ['based']"),
        (lambda s: s["exclude"].append({"width": 8}), "exclude[1] must use grid axes only"),
        (lambda s: s["grid"].update(lr=[-1.0]), "lr"),
        (lambda s: s["per_mixer"]["mamba"].update({"mixer_args.d_stat": 4}), "d_stat"),
        (lambda s: s["grid"].pop("mixer"), "the grid must have a 'mixer' axis"),
    ],
)
def test_sweep_mistakes_name_the_problem(tiny_study, edit, message):
    sweep = copy.deepcopy(SWEEP)
    edit(sweep)
    tiny_study["sweep"] = sweep
    with pytest.raises(ConfigError) as err:
        load_study(tiny_study)
    assert message in str(err.value)


def test_a_study_may_consist_of_a_sweep_alone(tiny_study):
    del tiny_study["runs"], tiny_study["models"]
    tiny_study["sweep"] = copy.deepcopy(SWEEP)
    assert len(load_study(tiny_study).run_names) == 12
    del tiny_study["sweep"]
    with pytest.raises(ConfigError, match="the study has no runs"):
        load_study(tiny_study)


def test_only_a_run_without_configfile_loads_the_default_study(tmp_path):
    from tinylang.config import ConfigError, needs_default_study

    mine = tmp_path / "my.yaml"
    mine.write_text("languages: {}\n")
    assert needs_default_study({"study": "x"}, []) is True  # --config study=x edits the default study
    assert needs_default_study({"study": "mine", "languages": {}}, [mine]) is False
    with pytest.raises(ConfigError, match=r"my\.yaml: no `study:` name.*add `study: <name>`"):
        needs_default_study({"languages": {}}, [mine])


def test_a_key_given_twice_is_refused_with_its_lines(tmp_path):
    from tinylang.config import ConfigError, needs_default_study

    twice = tmp_path / "twice.yaml"
    twice.write_text("study: x\ntraining:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: key 'lr' appears twice in one mapping \(lines 3 and 4\)"):
        needs_default_study({"study": "x"}, [twice])


@pytest.mark.parametrize("edit, field", [
    (lambda c: c["training"].update(lr=float("inf")), "lr"),
    (lambda c: c["training"].update(batch_size=True), "batch_size"),
    (lambda c: c["models"]["attention"].update(d_model=16.0), "d_model"),
    (lambda c: c["languages"].update(ar="../../etc/passwd"), "is not a language library name"),
])
def test_non_finite_numbers_bools_for_ints_and_paths_for_names_are_refused(tiny_study, edit, field):
    edit(tiny_study)
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_study(tiny_study, language_library=REPO / "config" / "languages")


def test_a_study_file_without_a_study_name_is_refused_not_merged_into_the_default(tmp_path, tiny_study):
    del tiny_study["study"]
    with pytest.raises(SystemExit) as stop:  # the study file is tmp_path/study.yaml
        snakemake_summary(tmp_path, tiny_study)
    assert f"{tmp_path / 'study.yaml'}: no `study:` name" in str(stop.value.code)
    assert not (tmp_path / "results").exists()


def test_config_overrides_apply_to_the_chosen_study(tmp_path, tiny_study):
    outputs = snakemake_summary(tmp_path, None, config={"study": "renamed"})["output_file"]  # the default study, renamed
    assert outputs.str.startswith("results/renamed/languages/").any()
    assert not outputs.str.startswith("results/default").any()
    outputs = snakemake_summary(tmp_path, tiny_study, config={"study": "tiny2"})["output_file"]
    assert outputs.str.startswith("results/tiny2/runs/attention/").any()


def _sweep_study(tiny_study, **grid):
    return {"study": "s", "languages": tiny_study["languages"], "training": {"steps": 12, "batch_size": 16},
            "sweep": {"model": {"d_model": 16, "n_layers": 1},
                      "grid": {"language": ["ar"], "mixer": ["attention"], "lr": [0.003], "seed": [0], **grid}}}


def test_list_valued_sweep_axes_give_path_safe_run_ids(tiny_study):
    study = load_study(_sweep_study(tiny_study, betas=[[0.9, 0.99], [0.9, 0.999]], checkpoints=[[4], [4, 8]]))
    assert study.run_names[:2] == ["ar-attention-betas0.9_0.99-checkpoints4-lr0.003-s0",
                                   "ar-attention-betas0.9_0.99-checkpoints4_8-lr0.003-s0"]
    assert study.run("ar-attention-betas0.9_0.99-checkpoints4_8-lr0.003-s0").train.checkpoints == [4, 8]


def test_grid_values_that_print_alike_are_blamed_on_the_grid(tiny_study):
    with pytest.raises(ConfigError, match=r"sweep.grid: two grid points give the run id 'ar-attention-lr0.001-s0'"):
        load_study(_sweep_study(tiny_study, lr=[0.001, 0.0010000001]))


def test_a_training_default_mistake_is_reported_once_not_once_per_run(tiny_study):
    tiny_study["training"]["lr"] = -1
    with pytest.raises(ConfigError) as err:
        load_study(tiny_study)
    assert str(err.value).count("lr: Input should be greater than 0") == 1
    assert "training.lr: Input should be greater than 0" in str(err.value)


def test_the_schema_describes_fields_with_the_comments_of_their_source():
    from tinylang.config import json_schema

    schema = json_schema()
    tracking = schema["$defs"]["TrackingConfig"]["properties"]
    assert tracking["mlflow_uri"]["description"].startswith("None: a file store in <dir>/mlruns")
    assert schema["properties"]["tracking"]["description"] == "off by default (tinylang.tracking)"
    assert schema["properties"]["evaluators"]["description"].startswith("Evaluators to run on checkpoints")
    ar = schema["$defs"]["ARConfig"]["properties"]
    assert ar["seed"]["description"] == "every random draw of the language"  # inherited from LanguageConfig


def test_every_field_of_the_schema_is_described():
    from tinylang.config import json_schema

    schema = json_schema()
    undescribed = [f"{name or 'study'}.{field}" for name, sub in [("", schema), *schema["$defs"].items()]
                   for field, prop in sub.get("properties", {}).items() if not prop.get("description")]
    assert undescribed == [], "give these fields a comment in their model's source"
