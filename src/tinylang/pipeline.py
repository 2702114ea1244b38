"""One function per workflow stage: what each Snakemake script calls.

Each takes plain paths and config dicts (as Snakemake params hold them), validates
them before any expensive work, and writes the stage's outputs. Nothing here imports
Snakemake, so every stage runs and is tested without it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from tinylang.tables import write_table

log = logging.getLogger("tinylang")


@contextmanager
def stage_logging(log_file: str | os.PathLike | None) -> Iterator[None]:
    """Send tinylang's log records to ``log_file`` (and stderr) for the duration of a stage."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger("tinylang")
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except Exception:
        log.exception("stage failed")
        raise
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, int(threads)))


def generate_language(config: dict[str, Any], out_dir: str | os.PathLike) -> None:
    """Language stage: validate ``config`` and write its splits and meta.json."""
    from tinylang.languages import parse_language_config, write_language

    language = parse_language_config(config)
    write_language(language, Path(out_dir))
    log.info("wrote language %s to %s", language.type, out_dir)


def train(
    model: dict[str, Any],
    train_config: dict[str, Any],
    language_dir: str | os.PathLike,
    checkpoints_dir: str | os.PathLike,
    train_log: str | os.PathLike,
    device: str = "auto",
    run: str = "",
    progress: bool = True,
    status: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Training stage. Works in ``<run>/partial`` (which survives a killed job, so a rerun
    resumes from its last resumable state) and moves the finished outputs into place.

    With ``status`` (a JSON file), a run whose loss became NaN or infinite is a *failed run*,
    not a failed stage: its checkpoints before the fault and its log so far are moved into place
    and ``status`` says ``{"status": "failed", "step", "lr", "reason", "checkpoints"}`` (the kept
    checkpoint steps); a finished run's says ``{"status": "ok"}``. Without ``status`` the fault
    is raised (``TrainingDiverged``). Returns the status."""
    from tinylang.models import ModelConfig
    from tinylang.training import TrainConfig, train_run
    from tinylang.training.loop import TrainingDiverged

    model_config, train_cfg = ModelConfig(**model), TrainConfig(**train_config)
    checkpoints_dir, train_log = Path(checkpoints_dir), Path(train_log)
    partial = checkpoints_dir.parent / "partial"
    result: dict[str, Any] = {"run": run, "status": "ok"}
    try:
        train_run(model_config, train_cfg, Path(language_dir), partial, device=device, run_name=run, progress=progress)
    except TrainingDiverged as fault:
        if status is None:
            raise
        result.update(status="failed", step=fault.step, lr=fault.lr, reason=fault.reason, checkpoints=fault.checkpoints)
    if checkpoints_dir.exists():
        shutil.rmtree(checkpoints_dir)
    os.replace(partial / "checkpoints", checkpoints_dir)
    os.replace(partial / "train_log.parquet", train_log)
    shutil.rmtree(partial, ignore_errors=True)
    if status is not None:
        _write_json(result, status)
        if result["status"] == "failed":
            log.warning("run %s is marked failed in %s; the workflow goes on without its later checkpoints", run, status)
    return result


def _write_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def read_run_status(path: str | os.PathLike) -> dict[str, Any]:
    """A train stage's status file: ``{"status": "ok"}`` or a failed run's
    ``{"status": "failed", "step", "lr", "reason", ...}``, with ``run`` (from the file, else
    the name of the run directory holding it)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"run status file {path} is unreadable: {err}") from err
    if not isinstance(data, dict) or data.get("status") not in ("ok", "failed"):
        raise ValueError(f"run status file {path} has no status 'ok' or 'failed': {data!r}")
    if not data.get("run"):
        data["run"] = path.parent.name
    return data


def evaluate(
    checkpoints_dir: str | os.PathLike,
    step: int | str,
    language_dir: str | os.PathLike,
    evaluator: str,
    options: dict[str, Any] | None,
    out: str | os.PathLike,
    device: str = "auto",
    run: str = "",
    status: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Evaluation stage: evaluator ``evaluator`` (with ``options``) on one checkpoint.

    Writes the evaluator's table with ``run``, ``step`` and ``split`` columns in front. When
    ``status`` (the train stage's status file) says the run failed before ``step``, so that
    checkpoint was never written, the table is empty, with the columns the evaluator gives
    (found by running it on the run's first checkpoint, the untrained model, and keeping no rows)."""
    from tinylang.evaluation.evaluators import EVALUATORS, parse_evaluator_options
    from tinylang.models import checkpoint_path

    spec, cfg = EVALUATORS.get(evaluator), parse_evaluator_options(evaluator, options)
    read_step, empty = step, False
    if status is not None and not checkpoint_path(checkpoints_dir, step).exists():
        run_status = read_run_status(status)
        if run_status["status"] == "failed" and int(step) >= int(run_status["step"]):
            kept = sorted(run_status.get("checkpoints") or [0])
            log.warning("%s: the run failed at step %s (%s), so checkpoint %s does not exist; writing an empty %s "
                        "table (columns from checkpoint %s)", run, run_status["step"], run_status.get("reason"), step,
                        evaluator, kept[0])
            read_step, empty = kept[0], True
            cfg = cfg.model_copy(update={"splits": (cfg.splits or _language_splits(language_dir))[:1]})
    model, data, meta = _checkpoint_and_data(checkpoints_dir, read_step, language_dir, cfg.splits, cfg.num_examples, device)
    if not spec.applies_to(model.model_config):
        raise ValueError(f"evaluator {evaluator!r} does not apply to mixer {model.model_config.mixer!r}")
    tables = []
    for split, tensors in data.items():
        table = spec.run(model, tensors, meta, cfg)
        table.insert(0, "split", split)
        tables.append(table)
        if not empty:
            log.info("%s: %s on %d %s examples of checkpoint %s", run, evaluator, len(tensors), split, step)
    table = pd.concat(tables, ignore_index=True)
    return _write_labelled(table.iloc[:0].copy() if empty else table, out, run, step)


def _language_splits(language_dir: str | os.PathLike) -> list[str]:
    from tinylang.languages import read_meta

    return list(read_meta(language_dir)["splits"])


def _checkpoint_and_data(checkpoints_dir, step, language_dir, splits, max_examples, device):
    """The checkpoint's model, the first ``max_examples`` of each split (None: every split) as
    tensors, and the language's meta; a split the language lacks is an error before any model is loaded."""
    import torch

    from tinylang.device import resolve_device
    from tinylang.languages import read_meta
    from tinylang.languages.dataset import load_tensors
    from tinylang.models import checkpoint_path, load_checkpoint

    meta = read_meta(language_dir)
    splits = list(meta["splits"]) if splits is None else splits
    unknown = [split for split in splits if split not in meta["splits"]]
    if unknown:
        raise ValueError(f"split(s) {unknown} not in the language's splits {list(meta['splits'])}")
    model, _ = load_checkpoint(checkpoint_path(checkpoints_dir, step), device=resolve_device(device))
    data = {}
    for split in splits:
        tensors = load_tensors(language_dir, split)
        data[split] = tensors.subset(torch.arange(min(len(tensors), max_examples)))
    return model, data, meta


def _write_labelled(table: pd.DataFrame, out: str | os.PathLike, run: str, step: int | str) -> pd.DataFrame:
    table.insert(0, "step", int(step))
    table.insert(0, "run", run)
    write_table(table, out)
    return table


def aggregate_study(
    coords: list[dict[str, Any]],
    language_splits: dict[str, list[str]],
    behaviour_tables: list[str | os.PathLike],
    intervention_tables: list[str | os.PathLike],
    outputs: dict[str, str | os.PathLike],
    status_files: list[str | os.PathLike] | None = None,
    min_gap: float | None = None,
) -> dict[str, pd.DataFrame]:
    """Aggregation stage: the study's tables (``runs``, ``run_accuracy``, ``selection``,
    ``curves``, ``mechanism``, ``dropped_runs``), each written to ``outputs[name]``.
    ``status_files`` are the train stage's status files (none given: every run finished); failed
    runs are reported in ``runs`` and never selected. ``min_gap``: the mechanism run filter's
    threshold (None: the paper's 0.01)."""
    from tinylang.figures.study_tables import build_study_tables

    statuses = None if status_files is None else [read_run_status(path) for path in status_files]
    failed = [s for s in statuses or [] if s["status"] == "failed"]
    for fault in failed:
        log.warning("run %s failed at step %s (learning rate %g: %s): reported with status 'failed', never selected",
                    fault["run"], fault.get("step"), fault.get("lr", float("nan")), fault.get("reason"))
    tables = build_study_tables(coords, language_splits, behaviour_tables, intervention_tables, statuses, min_gap)
    for name, path in outputs.items():
        if name not in tables:
            raise ValueError(f"no {name!r} table: it needs intervention tables")
        write_table(tables[name], path)
    if "dropped_runs" in tables:
        dropped = tables["dropped_runs"]
        reasons = {reason: int(n) for reason, n in dropped["reason"].str.split(":").str[0].value_counts().items()}
        log.info("mechanism figures: %d of %d runs kept on every split; dropped %d runs %s (listed in dropped_runs)",
                 len(tables["runs"]) - dropped["run"].nunique(), len(tables["runs"]), dropped["run"].nunique(), reasons)
    selection = tables["selection"]
    log.info("aggregated %d runs (%d failed) into %d configurations", len(tables["runs"]), len(failed), len(selection))
    return tables


def study_figure(
    figure: str,
    table: str | os.PathLike,
    table_out: str | os.PathLike,
    figure_outs: list[str | os.PathLike],
    options: dict[str, Any] | None = None,
    study: str | None = None,
    reference_csv: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Study figure stage: draw ``figure`` (a name of ``STUDY_FIGURES``) from its study table.
    ``study``: the study's name; figures that take a ``reference`` then draw the paper's numbers
    for it beside ours (``tinylang.figures.reference.study_reference``, from ``reference_csv``,
    by default ``config/paper/reference.csv``)."""
    import inspect

    from tinylang.figures import study_plots

    if figure.startswith("mechanism_by_"):
        draw, options = study_plots.mechanism_boxes, {"by": figure.removeprefix("mechanism_by_"), **(options or {})}
    elif figure in STUDY_FIGURES:
        draw = getattr(study_plots, STUDY_FIGURES[figure][1])
    else:
        raise ValueError(f"unknown study figure {figure!r}; allowed: {', '.join(STUDY_FIGURES)}, mechanism_by_<axis>")
    if study is not None and "reference" in inspect.signature(draw).parameters:
        from tinylang.figures.reference import REFERENCE_CSV, study_reference

        options = {"reference": study_reference(study, path=reference_csv or REFERENCE_CSV), **(options or {})}
    return draw(pd.read_parquet(table), table_out, figure_outs, **(options or {}))


# Study figure name → (the study table it is drawn from, the function of tinylang.figures.study_plots).
# ``mechanism_by_<column>`` draws the mechanism boxes split by a sweep axis or by ``layer``.
STUDY_FIGURES = {
    "accuracy_vs_width": ("selection", "accuracy_vs_width"),
    "mechanism_scatter": ("mechanism", "mechanism_scatter"),
    "mechanism_boxes": ("mechanism", "mechanism_boxes"),
    "mechanism_layers": ("mechanism", "mechanism_layers"),
    "study_training_curves": ("curves", "training_curves"),
    "generalisation": ("run_accuracy", "generalisation"),
}
