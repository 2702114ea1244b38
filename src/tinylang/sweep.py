"""Sweeps: a study's runs as the Cartesian product of a few lists.

A ``sweep`` block of a study config::

    sweep:
      model: {n_layers: 2, pos_embed: false}      # template for every run's model
      train: {steps: 5000}                        # template over the study's `training`
      grid:                                       # axis → values; runs = product of all axes
        language: [ar]
        mixer: [attention, based, mamba]
        d_model: [16, 32, 64]
        lr: [0.0003, 0.001, 0.003]
        seed: [0, 1, 2]
      per_mixer:                                  # settings for one mixer, over the templates
        attention: {pos_embed: true}              # the paper's convention: only attention has positions
        mamba: {mixer_args.d_conv: 4}
      exclude:                                    # runs matching every key of an entry are dropped
        - {mixer: based, d_model: 16}

An axis (or a ``per_mixer`` key) is ``language``, a model field (``mixer``, ``d_model``,
``n_layers``, ``pos_embed``, ``state_mixer``, ...), ``mixer_args.<name>`` or a training field
(``lr``, ``seed``, ``batch_size``, ``steps``, ...). Run ids are made from every axis's value, in
a fixed order (e.g. ``ar-attention-d64-lr0.001-s0``), so they stay the same when an axis gains a
value or the grid is reordered: adding a learning rate adds runs and renames none.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from tinylang.models import ModelConfig
from tinylang.strict import StrictModel
from tinylang.training.config import TrainConfig

MODEL_FIELDS = frozenset(ModelConfig.model_fields) - {"mixer_args"}
TRAIN_FIELDS = frozenset(TrainConfig.model_fields)
# Short labels of common axes in run ids; other axes use their own name.
LABELS = {"d_model": "d", "n_layers": "L", "lr": "lr", "seed": "s", "batch_size": "bs", "pos_embed": "pe",
          "state_mixer": "sm", "mlp_ratio": "mlp", "weight_decay": "wd", "steps": "steps", "norm": ""}
# Axes that name their value in the run id without a label.
BARE = {"language", "mixer", "norm"}


def axis_target(key: str) -> str:
    """Where a sweep key goes: "language", "model", "mixer_args" or "train" (ValueError if nowhere)."""
    if key == "language":
        return "language"
    if key.startswith("mixer_args.") and len(key) > len("mixer_args."):
        return "mixer_args"
    if key in MODEL_FIELDS:
        return "model"
    if key in TRAIN_FIELDS:
        return "train"
    allowed = sorted({"language", "mixer_args.<name>", *MODEL_FIELDS, *TRAIN_FIELDS})
    raise ValueError(f"unknown sweep key {key!r}; allowed: {', '.join(allowed)}")


class SweepConfig(StrictModel):
    """Runs as the product of ``grid``'s lists over the ``model``/``train`` templates."""

    model_config = ConfigDict(extra="forbid")

    model: dict[str, Any] = Field(default_factory=dict)  # template of every run's model
    train: dict[str, Any] = Field(default_factory=dict)  # template over the study's `training`
    grid: dict[str, list[Any]]  # axis → values; the runs are the product of every axis (language and mixer required)
    per_mixer: dict[str, dict[str, Any]] = Field(default_factory=dict)  # mixer → settings over the templates for its runs
    exclude: list[dict[str, Any]] = Field(default_factory=list)  # runs matching every key of an entry are left out

    @field_validator("grid")
    @classmethod
    def _axes(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            axis_target(key)
            if not values:
                raise ValueError(f"axis {key!r} has no values")
            if len({repr(v) for v in values}) != len(values):
                raise ValueError(f"axis {key!r} repeats a value: {values}")
        for required in ("language", "mixer"):
            if required not in grid:
                raise ValueError(f"the grid must have a {required!r} axis")
        return grid

    @field_validator("per_mixer")
    @classmethod
    def _per_mixer_keys(cls, per_mixer: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for settings in per_mixer.values():
            for key in settings:
                if axis_target(key) == "language":
                    raise ValueError("per_mixer settings cannot change the language")
        return per_mixer

    @model_validator(mode="after")
    def _names_refer_to_the_grid(self) -> SweepConfig:
        unknown = sorted(set(self.per_mixer) - set(self.grid["mixer"]))
        if unknown:
            raise ValueError(f"per_mixer names mixer(s) {unknown} that are not on the grid's mixer axis")
        for i, rule in enumerate(self.exclude):
            off_grid = sorted(set(rule) - set(self.grid))
            if off_grid or not rule:
                raise ValueError(f"exclude[{i}] must use grid axes only ({', '.join(self.grid)}); got {off_grid or 'nothing'}")
        return self


@dataclass(frozen=True)
class SweptRun:
    """One point of the grid: its id, its coordinates and the raw settings of its run."""

    name: str
    coords: dict[str, Any]
    language: str
    model: dict[str, Any]
    train: dict[str, Any]


def format_value(value: Any) -> str:
    """A coordinate as it appears in a run id (path- and wildcard-safe): ``0.001``, ``1``/``0``
    for booleans, ``0.9_0.99`` for a list value such as ``betas``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "_".join(format_value(item) for item in value)
    return str(value)


# Run ids list coordinates in this order (then mixer_args.*, then the other keys by name),
# so reordering the grid in a YAML file renames nothing.
ID_ORDER = ("language", "mixer", "d_model", "n_layers", "pos_embed", "state_mixer", "mlp_ratio", "norm")
ID_LAST = ("lr", "seed")


def _id_rank(key: str) -> tuple[int, int, str]:
    if key in ID_ORDER:
        return (0, ID_ORDER.index(key), "")
    if key in ID_LAST:
        return (3, ID_LAST.index(key), "")
    return (1 if key.startswith("mixer_args.") else 2, 0, key)


def run_id(coords: dict[str, Any]) -> str:
    """``ar-attention-d64-lr0.001-s0``: every coordinate, in a fixed order of axes."""
    parts = []
    for key in sorted(coords, key=_id_rank):
        value = coords[key]
        label = "" if key in BARE else LABELS.get(key, key.removeprefix("mixer_args.").replace("_", ""))
        parts.append(f"{label}{format_value(value)}")
    return "-".join(parts)


def expand(sweep: SweepConfig) -> list[SweptRun]:
    """Every run of the sweep, in grid order, without the excluded ones."""
    runs = []
    for values in itertools.product(*sweep.grid.values()):
        coords = dict(zip(sweep.grid, values))
        if any(all(coords.get(k) == v for k, v in rule.items()) for rule in sweep.exclude):
            continue
        model = {**sweep.model, "mixer_args": dict(sweep.model.get("mixer_args", {}))}
        train = dict(sweep.train)
        settings = {**sweep.per_mixer.get(coords["mixer"], {}), **coords}  # the grid wins
        for key, value in settings.items():
            target = axis_target(key)
            if target == "model":
                model[key] = value
            elif target == "mixer_args":
                model["mixer_args"][key.removeprefix("mixer_args.")] = value
            elif target == "train":
                train[key] = value
        runs.append(SweptRun(run_id(coords), coords, coords["language"], model, train))
    return runs
