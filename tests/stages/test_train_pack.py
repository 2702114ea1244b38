"""The pack stage: each run of a pack ends as the train stage leaves a run (its checkpoints,
train log and status in place, its partial folder gone), a diverging one as a failed run."""

from __future__ import annotations

import json

import pandas as pd

from tinylang.languages import parse_language_config
from tinylang.models import ModelConfig
from tinylang.stages import LanguageSpec, TrainPackSpec, TrainSpec, generate_language, train_pack
from tinylang.training import TrainConfig


def test_a_pack_leaves_each_run_as_the_train_stage_does(tmp_path):
    language = tmp_path / "languages" / "ar"
    generate_language(LanguageSpec(parse_language_config(
        {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0, "splits": {"train": 64, "test": 16}}),
        language))
    model = ModelConfig(mixer="attention", d_model=16, n_layers=1)
    base = {"batch_size": 16, "steps": 20, "checkpoints": [1], "warmup_steps": 5, "grad_clip": None, "seed": 0}
    runs = tuple(TrainSpec(name, model, TrainConfig(**base, lr=lr), language, tmp_path / name / "checkpoints",
                           tmp_path / name / "train_log.parquet", tmp_path / name / "status.json", device="cpu",
                           progress=False)
                 for name, lr in (("ok", 3e-3), ("nan", 1e6)))
    results = train_pack(TrainPackSpec(runs, device="cpu", log=tmp_path / "pack.log"))

    assert [r["status"] for r in results] == ["ok", "failed"]
    for run, result in zip(runs, results):
        assert json.loads(run.status.read_text()) == result
        assert not (run.run_dir / "partial").exists() and run.train_log.is_file()
    assert sorted(p.name for p in runs[0].checkpoints_dir.iterdir()) == ["step0.pt", "step1.pt", "step20.pt"]
    assert sorted(p.name for p in runs[1].checkpoints_dir.iterdir()) == ["step0.pt", "step1.pt"]
    assert (pd.read_parquet(runs[1].train_log)["step"] < results[1]["step"]).all()
    assert "2 runs train as one pack on cpu: ok, nan" in (tmp_path / "pack.log").read_text()
