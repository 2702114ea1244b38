"""The evaluator registry: every analysis that runs on one checkpoint, keyed by its config name.

A study's ``evaluators`` block names the evaluators to run and their options, e.g.::

    evaluators:
      behaviour: {checkpoints: all}
      interventions: {checkpoints: final, num_examples: 320}
      probes: {checkpoints: [1000, 3000]}

Each evaluator has an ``Options`` model (validated once, with the study), decides which models
it applies to (attention analysis needs attention probabilities), declares its table's columns
and their dtypes, and maps a model plus the evaluation data to that table; the workflow writes
one Parquet file per (run, checkpoint, evaluator), so each is cached and re-run on its own.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from tinylang.languages import POSITION_COLUMNS
from tinylang.models import HOOK_POINTS, ModelConfig
from tinylang.models.mixers import mixer_spec
from tinylang.registry import Registry
from tinylang.strict import StrictModel

if TYPE_CHECKING:
    import pandas as pd

CheckpointSelection = Literal["all", "final"] | list[int]


class EvaluatorOptions(StrictModel):
    """What every evaluator accepts: which checkpoints, which splits, how many examples."""

    model_config = ConfigDict(extra="forbid")

    checkpoints: CheckpointSelection = "final"
    splits: list[str] | None = ["test"]  # None: every split of the language
    num_examples: int = Field(320, ge=1)  # per split, the first ones
    batch_size: int = Field(64, ge=1)


class Evaluator:
    """One analysis of a checkpoint. Subclasses set ``Options`` and implement ``run``."""

    Options: ClassVar[type[EvaluatorOptions]] = EvaluatorOptions
    uses_threads: ClassVar[bool] = True  # whether the job benefits from the study's `threads`

    @classmethod
    def applies_to(cls, model: ModelConfig) -> bool:
        """Whether this evaluator can analyse models built from ``model``."""
        return True

    @classmethod
    def columns(cls, options: EvaluatorOptions) -> dict[str, str]:
        """The columns of ``run``'s table, in order, and their pandas dtypes (e.g. ``"float64"``,
        ``"str"``); known without a model, so a failed run's missing checkpoint gets an empty table."""
        raise NotImplementedError

    @classmethod
    def run(cls, model, tensors, meta: dict[str, Any], options: EvaluatorOptions) -> pd.DataFrame:
        """The tidy table for ``model`` on one split (``TokenTensors``); the caller adds ``split``."""
        raise NotImplementedError


EVALUATORS: Registry[type[Evaluator]] = Registry("evaluator", base=Evaluator, group="tinylang.evaluators")
DEFAULT_EVALUATORS: dict[str, dict[str, Any]] = {"behaviour": {}, "interventions": {}}


def empty_table(columns: dict[str, str]) -> pd.DataFrame:
    """A table without rows with ``columns`` (name → pandas dtype)."""
    import pandas as pd

    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})


def parse_evaluator_options(name: str, raw: dict[str, Any] | None) -> EvaluatorOptions:
    """Validate ``raw`` with evaluator ``name``'s options (KeyError naming the allowed ones)."""
    return EVALUATORS.get(name).Options(**(raw or {}))


class BehaviourOptions(EvaluatorOptions):
    checkpoints: CheckpointSelection = "all"
    splits: list[str] | None = None
    num_examples: int = Field(2000, ge=1)
    batch_size: int = Field(256, ge=1)


@EVALUATORS.register("behaviour")
class Behaviour(Evaluator):
    """Loss, accuracy, answer probability (and KL to the target distribution) per query type."""

    Options = BehaviourOptions
    uses_threads = False

    @classmethod
    def columns(cls, options):
        from .behaviour import SCHEMA

        return dict(SCHEMA)

    @classmethod
    def run(cls, model, tensors, meta, options):
        from .behaviour import evaluate_behaviour

        return evaluate_behaviour(model, {"": tensors}, batch_size=options.batch_size).drop(columns="split")


class InterventionOptions(EvaluatorOptions):
    num_examples: int = Field(128, ge=1)
    corrupt: list[Literal["query_item_orig", "target_item_orig"]] = ["query_item_orig", "target_item_orig"]
    # paper: any other token of the query item's class range; unused: a same-class token absent from the example
    corruption: Literal["paper", "unused"] = "paper"
    seed: int = 0


@EVALUATORS.register("interventions")
class Interventions(Evaluator):
    """Interchange interventions (pyvene) at every layer × component × probe position."""

    Options = InterventionOptions

    @classmethod
    def columns(cls, options):
        from .interventions import SCHEMA  # imports pyvene: seconds, still far less than a checkpoint's evaluation

        return dict(SCHEMA)

    @classmethod
    def run(cls, model, tensors, meta, options):
        from .interventions import run_interventions

        return run_interventions(model, tensors, meta["token_classes"], corrupt_items=tuple(options.corrupt),
                                 batch_size=options.batch_size, seed=options.seed,
                                 corruption=options.corruption)


@EVALUATORS.register("attention")
class Attention(Evaluator):
    """Attention mass per layer and head from each probe position to each probe position."""

    @classmethod
    def applies_to(cls, model: ModelConfig) -> bool:
        return mixer_spec(model.mixer).stores_attention

    @classmethod
    def columns(cls, options):
        from .attention import SCHEMA

        return dict(SCHEMA)

    @classmethod
    def run(cls, model, tensors, meta, options):
        from .attention import attention_mass

        return attention_mass(model, tensors, batch_size=options.batch_size)


class ProbeOptions(EvaluatorOptions):
    targets: list[str] = ["query_item", "target_item"]
    components: list[str] = ["block_output"]
    train_fraction: float = Field(0.5, gt=0, lt=1)
    l2: float = Field(1e-3, ge=0)
    seed: int = 0

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, targets: list[str]) -> list[str]:
        return _known(targets, POSITION_COLUMNS, "probe positions")

    @field_validator("components")
    @classmethod
    def _known_components(cls, components: list[str]) -> list[str]:
        return _known(components, HOOK_POINTS, "hook points")


def _known(names: list[str], allowed, what: str) -> list[str]:
    unknown = [name for name in names if name not in allowed]
    if unknown:
        close = {name: difflib.get_close_matches(name, list(allowed), n=1) for name in unknown}
        hints = "".join(f" ({name!r}: did you mean {match[0]!r}?)" for name, match in close.items() if match)
        raise ValueError(f"{unknown} are not {what}; allowed: {', '.join(allowed)}{hints}")
    return names


@EVALUATORS.register("probes")
class Probes(Evaluator):
    """Linear probes per layer × probe position for the query and target items."""

    Options = ProbeOptions

    @classmethod
    def columns(cls, options):
        from .probes import SCHEMA

        return dict(SCHEMA)

    @classmethod
    def run(cls, model, tensors, meta, options):
        from .probes import run_probes

        return run_probes(model, tensors, targets=tuple(options.targets), components=tuple(options.components),
                          train_fraction=options.train_fraction, l2=options.l2, seed=options.seed)
