"""Shared fixtures: tiny study configs that run in seconds."""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"

TINY_STUDY = {
    "study": "tiny",
    "device": "cpu",
    "threads": 1,
    "languages": {
        "ar": {
            "type": "ar",
            "num_kv": 16,
            "min_pairs": 2,
            "max_pairs": 3,
            "seed": 0,
            "splits": {"train": 256, "test": 32},
        }
    },
    "models": {
        "attention": {"mixer": "attention", "d_model": 16, "n_layers": 1},
        "mamba": {"mixer": "mamba", "d_model": 16, "n_layers": 1, "mixer_args": {"d_state": 4}},
    },
    "training": {"lr": 0.003, "batch_size": 16, "steps": 12, "checkpoints": [6], "seed": 0},
    "runs": {
        "attention": {"language": "ar", "model": "attention"},
        "mamba": {"language": "ar", "model": "mamba"},
    },
    "evaluators": {
        "behaviour": {"checkpoints": "all", "num_examples": 32},
        "interventions": {"checkpoints": "final", "num_examples": 8},
        "attention": {"checkpoints": "final", "num_examples": 8},
        "probes": {"checkpoints": "final", "num_examples": 32},
    },
}


@pytest.fixture
def tiny_study() -> dict:
    """A fresh copy of the tiny study config, safe to modify."""
    return copy.deepcopy(TINY_STUDY)


def write_study(workdir: Path, study: dict) -> Path:
    """``study`` as ``workdir/study.yaml``, the configfile the Snakemake helpers pass."""
    configfile = workdir / "study.yaml"
    configfile.write_text(yaml.safe_dump(study))
    return configfile


def run_snakemake(workdir: Path, study: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Snakemake on ``study`` (written to ``workdir/study.yaml``) in ``workdir``, with 2 cores;
    with ``check``, a failed run is an assertion error showing the end of its output."""
    configfile = write_study(workdir, study)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
         "--configfile", str(configfile), "--cores", "2", *args],
        capture_output=True, text=True, timeout=600, check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@contextlib.contextmanager
def snakemake_dag(workdir: Path, study: dict | None, *targets: str, config: dict | None = None, **dag_settings):
    """Snakemake's DAG (its ``DAGApi``) for ``study`` (written to ``workdir/study.yaml``; None: the
    default study) and ``targets``, with ``config`` as ``--config`` would give it, built in this
    process: a fraction of a second, where a new Snakemake process takes seconds to start and
    validate the config. Its printed output is discarded; a config the Snakefile refuses
    raises ``SystemExit`` with its message. ``dag_settings`` go to Snakemake's ``DAGSettings``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    configfiles = [] if study is None else [write_study(workdir, study)]
    with contextlib.chdir(Path.cwd()), SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(ResourceSettings(cores=2), ConfigSettings(configfiles=configfiles, config=config or {}),
                                snakefile=SNAKEFILE, workdir=workdir)
        yield workflow.dag(DAGSettings(targets=set(targets), **dag_settings))


def snakemake_summary(workdir: Path, study: dict | None, *targets: str, config: dict | None = None) -> pd.DataFrame:
    """Snakemake's ``--summary`` table (one row per output: its ``rule`` and ``plan``) for the DAG
    of ``snakemake_dag``."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), snakemake_dag(workdir, study, *targets, config=config) as dag:
        dag.summary()
    return pd.read_csv(io.StringIO(printed.getvalue()), sep="\t")


class LazyModule:
    """A module imported on its first attribute access (for a slow import a test module needs in
    its tests but not at collection, which every test worker does for the whole suite)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        return getattr(importlib.import_module(self._name), attribute)


# The tracking backends whose client library is installed; the shared study tracks with each.
TRACKED = [name for name in ("mlflow", "tensorboard", "wandb") if importlib.util.find_spec(name) is not None]


@pytest.fixture(scope="session")
def finished_tiny_study(tmp_path_factory) -> Path:
    """``TINY_STUDY`` run to completion once for the whole session, tracked with every installed
    backend (``TRACKED``; tracking re-plans nothing): the workdir of the one end-to-end study the
    workflow tests share. A test that changes its files works on a copy (``copy_finished_study``)."""
    workdir = tmp_path_factory.mktemp("finished_tiny_study")
    run_snakemake(workdir, {**TINY_STUDY, "tracking": {"backend": TRACKED}})
    return workdir


def copy_finished_study(workdir: Path, dest: Path) -> Path:
    """A copy of a finished study's workdir (modification times kept, so nothing is stale)."""
    return Path(shutil.copytree(workdir, dest, symlinks=True))


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models gain nothing from threads, and oversubscribed cores stall OpenMP."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_AR = {"type": "ar", "num_kv": 16, "min_pairs": 2, "max_pairs": 3, "seed": 0,
           "splits": {"train": 2000, "test": 200}}
TINY_AR_CHANCE = 1 / (TINY_AR["num_kv"] // 2)  # the answer is one of num_kv / 2 values


@pytest.fixture(scope="session")
def tiny_ar(tmp_path_factory) -> Path:
    """A small AR language (8 keys, 8 values, 2-3 pairs) on disk, written once per session."""
    from tinylang.languages import parse_language_config, write_language

    path = tmp_path_factory.mktemp("tiny_ar") / "ar"
    write_language(parse_language_config(TINY_AR), path)
    return path


def held_out_accuracy(language: Path, out_dir: Path, mixer: str, *, steps: int, lr: float,
                      warmup_steps: int = 10, mixer_args: dict | None = None) -> float:
    """Train a 2-layer width-32 model on ``language`` and return its test-split answer accuracy."""
    from tinylang.evaluation import evaluate_behaviour
    from tinylang.languages import load_tensors
    from tinylang.models import ModelConfig, load_checkpoint
    from tinylang.training import TrainConfig, train_run

    model = ModelConfig(mixer=mixer, d_model=32, n_layers=2, mixer_args=mixer_args or {})
    train = TrainConfig(lr=lr, steps=steps, warmup_steps=warmup_steps, batch_size=32, seed=0)
    train_run(model, train, language, out_dir, device="cpu", progress=False)
    trained, _ = load_checkpoint(out_dir / "checkpoints" / f"step{steps}.pt")
    table = evaluate_behaviour(trained, {"test": load_tensors(language, "test")})
    return table[(table.metric == "accuracy") & (table.query_type == "ALL")].value.item()


@pytest.fixture(scope="session")
def trained_attention(tiny_ar, tmp_path_factory):
    """A 2-layer width-32 attention model trained to solve ``tiny_ar`` (test accuracy 1.0 in ~2 s).

    PyTorch-default init, an untied head and qkv biases: in 600 steps this variant solves the
    task, where the paper's init and tied head reach about 0.44 (they learn slower at this size).
    Returns ``(model, checkpoints_dir)``; the model is in eval mode. Tests must not modify it.
    """
    from tinylang.models import ModelConfig, load_checkpoint
    from tinylang.training import TrainConfig, train_run

    out = tmp_path_factory.mktemp("trained_attention")
    model = ModelConfig(mixer="attention", d_model=32, n_layers=2, init="torch", tie_embeddings=False,
                        mixer_args={"bias": True})
    train = TrainConfig(lr=3e-3, steps=600, warmup_steps=20, batch_size=32, seed=0)
    train_run(model, train, tiny_ar, out, device="cpu", progress=False)
    trained, _ = load_checkpoint(out / "checkpoints" / "step600.pt")
    return trained.eval(), out / "checkpoints"


@pytest.fixture(scope="session")
def untrained_attention(trained_attention):
    """The same architecture as ``trained_attention`` at a seeded initialisation."""
    from tinylang.models import build_model

    trained, _ = trained_attention
    torch.manual_seed(0)
    return build_model(trained.model_config, trained.config.vocab_size, trained.config.max_len).eval()

