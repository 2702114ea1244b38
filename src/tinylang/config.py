"""The study config: one pydantic model, validated once at the edge (the Snakefile or the CLI).

A study names its languages, its models and its runs (language × model × training
settings), plus which checkpoints get which evaluation. Every error names the field
that is wrong, e.g. ``models.mamba.mixer: unknown mixer 'mamab'; allowed: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from tinylang.languages import parse_language_config
from tinylang.models import ModelConfig
from tinylang.training.config import TrainConfig

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # names become path parts and wildcards
PROBE_ITEMS = ("query_item_orig", "target_item_orig")


class ConfigError(ValueError):
    """A study config is invalid; the message lists every problem with its field."""


CheckpointSelection = Literal["all", "final"] | list[int]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvaluationConfig(_Section):
    """Behavioural metrics (loss, accuracy, answer probability) per checkpoint."""

    checkpoints: CheckpointSelection = "all"
    splits: list[str] | None = None  # None: every split of the language
    max_examples: int = Field(2000, ge=1)  # per split, the first ones
    batch_size: int = Field(256, ge=1)


class InterventionConfig(_Section):
    """Interchange interventions per checkpoint."""

    checkpoints: CheckpointSelection = "final"
    split: str = "test"
    num_examples: int = Field(128, ge=1)
    batch_size: int = Field(64, ge=1)
    corrupt: list[Literal["query_item_orig", "target_item_orig"]] = list(PROBE_ITEMS)
    seed: int = 0


class RunSpec(_Section):
    """One training run: a language, a model and overrides of the study's training defaults."""

    language: str
    model: str
    train: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """A run with everything resolved: what the train rule needs and nothing else."""

    name: str
    language: str
    model: ModelConfig
    train: TrainConfig
    total_steps: int

    @property
    def checkpoint_steps(self) -> list[int]:
        return self.train.checkpoint_steps(self.total_steps)


class StudyConfig(_Section):
    study: str = Field(pattern=NAME_PATTERN)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(2, ge=1)  # torch threads per training/intervention job
    languages: dict[str, Any]
    models: dict[str, ModelConfig]
    training: dict[str, Any] = Field(default_factory=dict)  # defaults for every run's `train`
    runs: dict[str, RunSpec]
    evaluation: EvaluationConfig = EvaluationConfig()
    interventions: InterventionConfig = InterventionConfig()
    _runs: dict[str, Run] = PrivateAttr(default_factory=dict)

    @field_validator("languages", "models", "runs")
    @classmethod
    def _names_are_path_safe(cls, entries: dict[str, Any]) -> dict[str, Any]:
        import re

        for name in entries:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"name {name!r} must match {NAME_PATTERN} (it becomes a path)")
        if not entries:
            raise ValueError("must not be empty")
        return entries

    @model_validator(mode="after")
    def _resolve_languages_and_runs(self, info: ValidationInfo) -> "StudyConfig":
        problems = []
        parsed, known = {}, list(self.languages)
        library = (info.context or {}).get("language_library")
        for name, raw in self.languages.items():
            try:
                if isinstance(raw, str):  # a named config from the language library
                    raw = _library_language(raw, library)
                parsed[name] = parse_language_config(raw)
            except ValidationError as err:
                problems += [f"languages.{name}.{line}" for line in _lines(err)]
            except (ValueError, TypeError, OSError, yaml.YAMLError) as err:
                problems.append(f"languages.{name}: {err}")
        self.languages = parsed
        trains = {}
        for name, spec in self.runs.items():
            if spec.language not in known:
                problems.append(f"runs.{name}.language: {spec.language!r} is not one of: {', '.join(known)}")
            if spec.model not in self.models:
                problems.append(f"runs.{name}.model: {spec.model!r} is not one of: {', '.join(self.models)}")
            try:
                trains[name] = TrainConfig(**{**self.training, **spec.train})
            except ValidationError as err:
                problems += [f"runs.{name}.train (with training defaults): {line}" for line in _lines(err)]
        if problems:
            raise ValueError("\n".join(problems))
        # Resolved once here; the Snakefile asks for runs many times while it plans.
        self._runs = {
            name: Run(name, spec.language, self.models[spec.model], trains[name],
                      trains[name].total_steps(self.languages[spec.language].splits["train"]))
            for name, spec in self.runs.items()
        }
        return self

    def run(self, name: str) -> Run:
        """The fully resolved run ``name``."""
        return self._runs[name]

    def eval_steps(self, run: str, section: EvaluationConfig | InterventionConfig) -> list[int]:
        """The checkpoint steps at which ``section``'s evaluation runs for ``run``."""
        steps = self.run(run).checkpoint_steps
        if section.checkpoints == "all":
            return steps
        if section.checkpoints == "final":
            return steps[-1:]
        missing = sorted(set(section.checkpoints) - set(steps))
        if missing:
            raise ConfigError(f"evaluation checkpoints {missing} are not saved by run {run!r} (saved: {steps})")
        return sorted(section.checkpoints)


def _lines(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = ".".join(str(part) for part in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def _library_language(name: str, library: str | Path | None) -> dict[str, Any]:
    """The language config ``<library>/<name>.yaml`` (``config/languages`` in the workflow)."""
    if library is None:
        raise ValueError(f"{name!r} names a library language config, but no language library was given")
    path = Path(library) / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in Path(library).glob("*.yaml"))) or "none"
        raise ValueError(f"no language config {path}; available: {available}")
    return yaml.safe_load(path.read_text())


def load_study(raw: dict[str, Any], language_library: str | Path | None = None) -> StudyConfig:
    """Validate a study config dict; ConfigError lists each problem with its field path.

    A language given as a string names a config file in ``language_library``."""
    try:
        study = StudyConfig.model_validate(raw, context={"language_library": language_library})
        for name in study.runs:  # checkpoint selections must name saved steps
            study.eval_steps(name, study.evaluation)
            study.eval_steps(name, study.interventions)
    except ValidationError as err:
        raise ConfigError("invalid study config:\n  " + "\n  ".join(_lines(err))) from None
    return study


def json_schema() -> dict[str, Any]:
    """The study config's JSON schema (2020-12), languages included from their registry."""
    from tinylang.languages import LANGUAGES

    schema = StudyConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    defs = schema.setdefault("$defs", {})
    variants = []
    for name in LANGUAGES.names():
        config_cls = LANGUAGES.get(name).Config
        sub = config_cls.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        defs[config_cls.__name__] = sub
        variants.append({"$ref": f"#/$defs/{config_cls.__name__}"})
    library_name = {"type": "string", "description": "the name of a file in config/languages (without .yaml)"}
    schema["properties"]["languages"]["additionalProperties"] = {"oneOf": [*variants, library_name]}
    schema["properties"]["models"]["additionalProperties"]["$ref"] = "#/$defs/ModelConfig"
    schema["properties"]["training"] = {
        **TrainConfig.model_json_schema(ref_template="#/$defs/{model}"),
        "required": [],
        "description": "Training defaults for every run (TrainConfig); a run's `train` overrides them.",
    }
    return schema
