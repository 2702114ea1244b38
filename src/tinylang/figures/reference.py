"""The paper's reference numbers: values *Mechanistic evaluation of Transformers and state
space models* (Arora et al. 2025, arXiv 2505.15105) states in its text, tables or captions,
kept in ``config/paper/reference.csv`` (one number a row; none read off a plot) and drawn
beside ours by the study figures (``tinylang.figures.study_plots``).

Columns of the file (empty cells are allowed where marked *optional*):

* ``study``: the paper-scale study the number belongs to (``config/studies/<study>.yaml``;
  its ``-cpu`` counterpart gets the same rows);
* ``task``: the language of our library (``config/languages/<task>.yaml``) that reproduces
  the paper's task;
* ``section``, ``figure``, ``paper_version`` (v1, v2 or v3): where the paper states it;
* ``mixer``: our mixer name; ``d_model``, ``n_layers`` (*optional*, integers);
  ``pos_embed`` (*optional*, true/false); ``split`` (*optional*: the split the paper read it
  on, where it says; empty is the task's evaluation split);
* ``readout`` (@Key, @Query or @Value; required for ``attrib``, empty otherwise);
* ``metric``: ``accuracy`` or ``attrib``;
* ``statistic``: what the number summarises: ``at_width`` (the configuration at ``d_model``,
  best learning rate), ``max_over_widths`` (the best over widths; no ``d_model``),
  ``nearly_all_runs`` (the value nearly all kept runs take);
* ``value`` (a fraction, not a percentage) and ``note`` (the paper's words, quoted).

``paper_reference`` loads and validates the file; ``study_reference`` selects a study's rows
and names their ``language`` as that study does."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import yaml

from tinylang.evaluation.attribution import READOUTS

PathLike = str | os.PathLike

_REPO = Path(__file__).resolve().parents[3]
REFERENCE_CSV = _REPO / "config" / "paper" / "reference.csv"
STUDIES_DIR = _REPO / "config" / "studies"
LANGUAGES_DIR = _REPO / "config" / "languages"

COLUMNS = (
    "study", "task", "section", "figure", "paper_version", "mixer", "d_model", "n_layers",
    "pos_embed", "split", "readout", "metric", "statistic", "value", "note",
)
REQUIRED = ("study", "task", "section", "figure", "paper_version", "mixer", "metric", "statistic", "value")
METRICS = ("accuracy", "attrib")
STATISTICS = ("at_width", "max_over_widths", "nearly_all_runs")
VERSIONS = ("v1", "v2", "v3")
_BOOLEANS = {"true": True, "false": False}


class ReferenceError(ValueError):
    """A reference file that cannot be used; the message names the file and the row."""


def _known(directory: Path, cpu: bool = False) -> set[str]:
    return {p.stem for p in directory.glob("*.yaml") if cpu or not p.stem.endswith("-cpu")}


def _integer(text: str, column: str) -> int | None:
    if text == "":
        return None
    try:
        number = int(text)
    except ValueError:
        raise ValueError(f"{column} {text!r} is not an integer") from None
    if number <= 0:
        raise ValueError(f"{column} {number} is not positive")
    return number


def _row(raw: dict[str, str], studies: set[str], tasks: set[str]) -> dict[str, object]:
    """One validated row (a ValueError says what is wrong with it)."""
    from tinylang.models.mixers import MIXERS  # torch: only when the paper's numbers are drawn

    missing = [c for c in REQUIRED if raw[c] == ""]
    if missing:
        raise ValueError(f"empty {', '.join(missing)}")
    checks = [
        ("study", studies), ("task", tasks), ("paper_version", VERSIONS), ("mixer", MIXERS.names()),
        ("metric", METRICS), ("statistic", STATISTICS),
    ]
    for column, allowed in checks:
        if raw[column] not in allowed:
            raise ValueError(f"unknown {column} {raw[column]!r}; allowed: {', '.join(sorted(allowed))}")
    try:
        value = float(raw["value"])
    except ValueError:
        raise ValueError(f"value {raw['value']!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"value {raw['value']!r} is not finite")
    if raw["pos_embed"].lower() not in ("", *_BOOLEANS):
        raise ValueError(f"pos_embed {raw['pos_embed']!r} is not true, false or empty")
    d_model = _integer(raw["d_model"], "d_model")
    if (raw["statistic"] == "at_width") != (d_model is not None):
        raise ValueError("statistic at_width needs a d_model, and only it has one")
    readout = raw["readout"]
    if (raw["metric"] == "attrib") != (readout != ""):
        raise ValueError("metric attrib needs a readout, and only it has one")
    if readout and readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; allowed: {', '.join(READOUTS)}")
    return {
        **{c: (raw[c] or None) for c in COLUMNS},
        "d_model": d_model,
        "n_layers": _integer(raw["n_layers"], "n_layers"),
        "pos_embed": _BOOLEANS.get(raw["pos_embed"].lower()),
        "value": value,
    }


def paper_reference(study: str | None = None, path: PathLike = REFERENCE_CSV) -> pd.DataFrame:
    """The paper's numbers in ``path`` (default ``config/paper/reference.csv``), validated:
    the file has exactly the ``COLUMNS``, every row known studies, tasks, mixers, readouts,
    metrics and statistics, and numeric values (a ``ReferenceError`` names the file and the
    row's line otherwise). ``study``: only that study's rows (a ``-cpu`` suffix is dropped).

    Returns one row per number: ``d_model``/``n_layers`` as nullable integers,
    ``pos_embed`` as a nullable boolean, ``value`` as a float, empty cells as missing."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as err:
        raise ReferenceError(f"{path}: cannot read the reference table: {err}") from None
    columns = list(raw.columns)
    if columns != list(COLUMNS):
        missing = [c for c in COLUMNS if c not in columns]
        extra = [c for c in columns if c not in COLUMNS]
        raise ReferenceError(
            f"{path}: columns must be {', '.join(COLUMNS)} (missing: {', '.join(missing) or 'none'}; "
            f"unknown: {', '.join(extra) or 'none'})"
        )
    studies, tasks = _known(STUDIES_DIR), _known(LANGUAGES_DIR)
    rows = []
    for line, record in enumerate(raw.to_dict("records"), start=2):  # line 1 is the header
        try:
            rows.append(_row({k: v.strip() for k, v in record.items()}, studies, tasks))
        except ValueError as err:
            raise ReferenceError(f"{path}, line {line}: {err}") from None
    table = pd.DataFrame(rows, columns=list(COLUMNS)).astype(
        {"d_model": "Int64", "n_layers": "Int64", "pos_embed": "boolean", "value": float}
    )
    if study is not None:
        table = table[table["study"] == study.removesuffix("-cpu")]
    return table.reset_index(drop=True)


def _study_languages(study: str) -> dict[str, str]:
    """The paper-scale study's language keys → the library languages they name."""
    config = STUDIES_DIR / f"{study}.yaml"
    if not config.exists():
        return {}
    languages = yaml.safe_load(config.read_text()).get("languages") or {}
    return {key: name for key, name in languages.items() if isinstance(name, str)}


def study_reference(
    study: str,
    languages: dict[str, str] | None = None,
    path: PathLike = REFERENCE_CSV,
) -> pd.DataFrame:
    """The reference rows of ``study`` (``-cpu`` studies share their paper-scale study's rows)
    with a ``language`` column: the study's key of the row's task. ``languages``: the study's
    language keys → task (default: those of ``config/studies/<study>.yaml``, whose keys the
    ``-cpu`` studies reuse). Rows of tasks the study does not name are left out."""
    base = study.removesuffix("-cpu")
    keys = {task: key for key, task in (languages or _study_languages(base)).items()}
    rows = paper_reference(base, path)
    rows = rows.assign(language=rows["task"].map(keys))
    return rows[rows["language"].notna()].reset_index(drop=True)


__all__ = ["COLUMNS", "REFERENCE_CSV", "ReferenceError", "paper_reference", "study_reference"]
