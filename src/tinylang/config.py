"""The study config: one pydantic model, validated once at the edge (the Snakefile or the CLI).

A study names its languages, its models and its runs (language × model × training
settings), plus which checkpoints get which evaluation. Every error names the field
that is wrong, e.g. ``models.mamba.mixer: unknown mixer 'mamab'; allowed: ...``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tinylang.evaluation.evaluators import (
    DEFAULT_EVALUATORS,
    EVALUATORS,
    EvaluatorOptions,
    parse_evaluator_options,
)
from tinylang.languages import parse_language_config
from tinylang.models import ModelConfig
from tinylang.strict import StrictModel, describe_fields
from tinylang.sweep import MODEL_FIELDS, SweepConfig, expand
from tinylang.tracking import TrackingConfig
from tinylang.training.config import CompileChoice, TrainConfig, pack_key

if TYPE_CHECKING:
    from tinylang.targets import StudyTargets

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # names become path parts and wildcards


class ConfigError(ValueError):
    """A study config is invalid; the message lists every problem with its field."""


class _Section(StrictModel):
    model_config = ConfigDict(extra="forbid")


class RunSpec(_Section):
    """One training run: a language, a model and overrides of the study's training defaults."""

    language: str  # a name in the study's `languages`
    model: str  # a name in the study's `models`
    train: dict[str, Any] = Field(default_factory=dict)  # this run's training settings over the study's `training`


class PackConfig(_Section):
    """Runs that differ only in learning rate and seed, trained together in one job."""

    # At most this many runs a pack, in run order; 1: every run trains alone (the default).
    max_runs: int = Field(1, ge=1)


@dataclass(frozen=True)
class Run:
    """A run with everything resolved: what the train rule needs and nothing else."""

    name: str
    language: str
    model: ModelConfig
    train: TrainConfig
    total_steps: int
    swept: tuple[str, ...] = ()  # the sweep axes this run came from (empty for a named run)

    @property
    def checkpoint_steps(self) -> list[int]:
        return self.train.checkpoint_steps(self.total_steps)

    def coords(self) -> dict[str, Any]:
        """The run's coordinates for aggregation: language, mixer, width, layers, positions,
        learning rate and seed, plus every other swept axis."""
        coords = {"run": self.name, "language": self.language, "mixer": self.model.mixer,
                  "d_model": self.model.d_model, "n_layers": self.model.n_layers,
                  "pos_embed": self.model.pos_embed, "lr": self.train.lr, "seed": self.train.seed}
        for axis in self.swept:
            if axis.startswith("mixer_args."):
                coords[axis] = self.model.mixer_args[axis.removeprefix("mixer_args.")]
            elif axis not in coords:
                coords[axis] = getattr(self.model, axis, None) if axis in MODEL_FIELDS else getattr(self.train, axis)
        return coords


class StudyConfig(_Section):
    study: str = Field(pattern=NAME_PATTERN)  # the study's name: its outputs go to results/<study>
    device: Literal["auto", "cpu", "cuda"] = "auto"  # where jobs train and evaluate (auto: cuda when there is one)
    threads: int = Field(2, ge=1)  # torch threads per training/intervention job
    # Compile each run's train step (tinylang.training.config.CompileChoice: true = torch.compile,
    # cudagraphs = CUDA graphs); like threads, a way of running that re-runs nothing when changed.
    compile: CompileChoice = False
    # The paper-scale study whose reference numbers the figures draw (config/paper/reference.csv);
    # None: this study's name without "-cpu".
    paper_study: str | None = Field(None, pattern=NAME_PATTERN)
    # Language name → its config, or the name of one in config/languages (tinylang.languages).
    languages: dict[str, Any]
    models: dict[str, ModelConfig] = Field(default_factory=dict)  # model name → its architecture (tinylang.models)
    training: dict[str, Any] = Field(default_factory=dict)  # defaults for every run's `train`
    runs: dict[str, RunSpec] = Field(default_factory=dict)  # run name → a language, a model and training overrides
    sweep: SweepConfig | None = None  # more runs, as a grid (tinylang.sweep)
    # Evaluator name → its options (None or {} for the defaults); see tinylang.evaluation.evaluators.
    evaluators: dict[str, dict[str, Any] | None] = Field(default_factory=lambda: dict(DEFAULT_EVALUATORS))
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)  # off by default (tinylang.tracking)
    pack: PackConfig = Field(default_factory=lambda: PackConfig())  # off by default (tinylang.training.packed)
    _runs: dict[str, Run] = PrivateAttr(default_factory=dict)
    _evaluators: dict[str, EvaluatorOptions] = PrivateAttr(default_factory=dict)

    @field_validator("compile")
    @classmethod
    def _cuda_graphs_need_cuda(cls, compile: CompileChoice, info: ValidationInfo) -> CompileChoice:
        if compile == "cudagraphs" and info.data.get("device") == "cpu":
            raise ValueError("cudagraphs captures CUDA kernels: use it with device cuda or auto (or compile: true)")
        return compile

    @field_validator("languages", "models", "runs")
    @classmethod
    def _names_are_path_safe(cls, entries: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for name in entries:
            if not re.match(NAME_PATTERN, name):
                raise ValueError(f"name {name!r} must match {NAME_PATTERN} (it becomes a path)")
        if not entries and info.field_name == "languages":
            raise ValueError("must not be empty")
        return entries

    @model_validator(mode="after")
    def _resolve_languages_and_runs(self, info: ValidationInfo) -> StudyConfig:
        problems = []
        parsed, known = {}, list(self.languages)
        library = (info.context or {}).get("language_library")
        for name, raw in self.languages.items():
            try:
                if isinstance(raw, str):  # a named config from the language library
                    raw = _library_language(raw, library)
                parsed[name] = parse_language_config(raw)
            except ValidationError as err:
                problems += _lines(err, f"languages.{name}")
            except (ValueError, TypeError, OSError, yaml.YAMLError) as err:
                problems.append(f"languages.{name}: {err}")
        self.languages = parsed
        trains = {}
        shared = self._training_default_problems()
        problems += shared
        shared_messages = {line.removeprefix("training.").removeprefix("training: ") for line in shared}
        for name, spec in self.runs.items():
            if spec.language not in known:
                problems.append(f"runs.{name}.language: {spec.language!r} is not one of: {', '.join(known)}")
            if spec.model not in self.models:
                problems.append(f"runs.{name}.model: {spec.model!r} is not one of: {', '.join(self.models)}")
            try:
                trains[name] = TrainConfig(**{**self.training, **spec.train})
            except ValidationError as err:
                problems += [f"runs.{name}.train (with training defaults): {line}" for line in _lines(err)
                             if line not in shared_messages]
        for name, raw in self.evaluators.items():
            try:
                self._evaluators[name] = parse_evaluator_options(name, raw)
            except KeyError as err:
                problems.append(f"evaluators.{name}: {err.args[0]}")
            except ValidationError as err:
                problems += _lines(err, f"evaluators.{name}")
        if problems:
            raise ValueError("\n".join(problems))
        # Resolved once here; the Snakefile asks for runs many times while it plans.
        self._runs = {
            name: Run(name, spec.language, self.models[spec.model], trains[name],
                      trains[name].total_steps(self.languages[spec.language].splits["train"]))
            for name, spec in self.runs.items()
        }
        if self.sweep is not None:
            self._add_swept_runs(self.sweep, known)
        if not self._runs:
            raise ValueError("runs: the study has no runs (give `runs`, a `sweep`, or both)")
        problems = _grouped(self._run_problems()) + self._evaluator_split_problems() + self._memory_problems()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _run_problems(self) -> list[tuple[str, str]]:
        """(run, problem) for training settings that only the run's length shows wrong."""
        problems = []
        for name, run in self._runs.items():
            total = run.total_steps
            if run.train.warmup_steps > total:
                problems.append((name, f"training.warmup_steps ({run.train.warmup_steps}) exceeds the run's "
                                       f"{total} steps"))
            late = sorted(step for step in run.train.checkpoints if step > total)
            if late:
                problems.append((name, f"training.checkpoints {late} lie past the run's last step ({total})"))
        return problems

    def _memory_problems(self, available: int | None = None) -> list[str]:
        """Languages and models whose lower-bound memory exceeds the machine's (a bare
        MemoryError or a 12 TB allocation deep inside a job, otherwise)."""
        available = machine_memory_bytes() if available is None else available
        have = f"this machine has {_gib(available)}"
        problems = [f"languages.{name}: generating it takes at least {_gib(config.min_bytes())}; {have}"
                    for name, config in self.languages.items() if config.min_bytes() > available]
        for name, model in {**self.models, **{run.name: run.model for run in self._runs.values()}}.items():
            need = _model_min_bytes(model)
            if need > available:
                where = f"models.{name}" if name in self.models else f"sweep run {name}"
                problems.append(f"{where}.d_model: {model.d_model} × {model.n_layers} layers takes at least "
                                f"{_gib(need)} to train (weights, gradients and Adam's two moments); {have}")
                break
        return problems

    def _evaluator_split_problems(self) -> list[str]:
        """Evaluators asked for a split that a language they evaluate lacks."""
        problems = []
        for evaluator, options in self._evaluators.items():
            languages = {run.language for run in self._runs.values() if EVALUATORS.get(evaluator).applies_to(run.model)}
            for language in sorted(languages):
                have = list(self.languages[language].splits)
                missing = [split for split in options.splits or () if split not in have]
                if missing:
                    problems.append(f"evaluators.{evaluator}.splits: {missing} not among language {language!r}'s "
                                    f"splits ({', '.join(have)})")
        return problems

    def _training_default_problems(self) -> list[str]:
        """The ``training`` defaults' own mistakes, once (not once per run that inherits them)."""
        length = {} if {"steps", "epochs"} & set(self.training) else {"steps": 1}  # runs may give the length
        try:
            TrainConfig(**{**self.training, **length})
        except ValidationError as err:
            return _lines(err, "training")
        return []

    def _add_swept_runs(self, sweep: SweepConfig, known: list[str]) -> None:
        problems = []
        unknown = [name for name in sweep.grid["language"] if name not in known]
        if unknown:
            raise ValueError(f"sweep.grid.language: {unknown} not among the languages: {', '.join(known)}")
        for point in expand(sweep):
            where = f"sweep run {point.name}"
            if point.name in self.runs:
                problems.append(f"{where}: the name is taken by a run in `runs`")
                continue
            if point.name in self._runs:
                problems.append(f"sweep.grid: two grid points give the run id {point.name!r} (values that print "
                                "alike in an id, e.g. 0.001 and 0.0010000001): make them distinct")
                continue
            try:
                model = ModelConfig(**point.model)
                train = TrainConfig(**{**self.training, **point.train})
            except ValidationError as err:
                problems += [f"{where}: {line}" for line in _lines(err)]
                continue
            total = train.total_steps(self.languages[point.language].splits["train"])
            self._runs[point.name] = Run(point.name, point.language, model, train, total, tuple(sweep.grid))
            if len(problems) > 5:
                break
        if problems:
            raise ValueError("\n".join(problems))

    @property
    def run_names(self) -> list[str]:
        """Every run: the named ones, then the sweep's in grid order."""
        return list(self._runs)

    def run(self, name: str) -> Run:
        """The fully resolved run ``name``."""
        return self._runs[name]

    def packs(self) -> dict[str, list[str]]:
        """The packs of two runs or more (``pack.max_runs``): pack name → its runs, in run order.
        A pack is named after its first run (``pack-<run>``). Runs pack together when they share
        the language and ``tinylang.training.config.pack_key``."""
        groups: dict[tuple, list[str]] = {}
        for name, run in self._runs.items():
            groups.setdefault((run.language, *pack_key(run.model, run.train)), []).append(name)
        size = self.pack.max_runs
        chunks = [names[i : i + size] for names in groups.values() for i in range(0, len(names), size)]
        return {f"pack-{chunk[0]}": chunk for chunk in chunks if len(chunk) > 1}

    def targets(self, out: str) -> StudyTargets:
        """The study's output paths under ``out`` and the list of all of them (``tinylang.targets``)."""
        from tinylang.targets import StudyTargets

        return StudyTargets(self, out)

    def evaluator_options(self, evaluator: str) -> EvaluatorOptions:
        """The validated options of ``evaluator`` (one of the study's ``evaluators``)."""
        return self._evaluators[evaluator]

    def evaluators_for(self, run: str) -> list[str]:
        """The study's evaluators that apply to ``run``'s model (e.g. attention only to attention)."""
        model = self.run(run).model
        return [name for name in self._evaluators if EVALUATORS.get(name).applies_to(model)]

    def evaluators_at(self, run: str, step: int) -> list[str]:
        """The evaluators that apply to ``run`` and analyse its checkpoint at ``step``, in the study's order."""
        return [name for name in self.evaluators_for(run) if step in self.eval_steps(run, name)]

    def eval_steps(self, run: str, evaluator: str) -> list[int]:
        """The checkpoint steps at which ``evaluator`` runs for ``run``."""
        steps = self.run(run).checkpoint_steps
        selection = self._evaluators[evaluator].checkpoints
        if selection == "all":
            return steps
        if selection == "final":
            return steps[-1:]
        missing = sorted(set(selection) - set(steps))
        if missing:
            raise ConfigError(
                f"evaluators.{evaluator}.checkpoints: {missing} are not saved by run {run!r} (saved: {steps})"
            )
        return sorted(selection)


def _lines(err: ValidationError, prefix: str = "") -> list[str]:
    """One ``field.path: message`` line per error, the path under ``prefix``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(part) for part in (prefix, *e["loc"]) if part != "")
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def _library_language(name: str, library: str | Path | None) -> dict[str, Any]:
    """The language config ``<library>/<name>.yaml`` (``config/languages`` in the workflow)."""
    if library is None:
        raise ValueError(f"{name!r} names a library language config, but no language library was given")
    available = ", ".join(sorted(p.stem for p in Path(library).glob("*.yaml"))) or "none"
    if not re.match(NAME_PATTERN, name) or ".." in name:  # a name, not a path out of the library
        raise ValueError(f"{name!r} is not a language library name (one of: {available})")
    path = Path(library) / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"no language config {path}; available: {available}")
    return load_yaml_file(path)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1}): remove one", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_yaml_file(path: str | Path) -> Any:
    """A YAML file's contents; ConfigError naming the file for a key given twice or bad YAML."""
    try:
        return yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_study(raw: dict[str, Any], language_library: str | Path | None = None) -> StudyConfig:
    """Validate a study config dict; ConfigError lists each problem with its field path.

    A language given as a string names a config file in ``language_library``."""
    try:
        study = StudyConfig.model_validate(raw, context={"language_library": language_library})
        for name in study.run_names:  # checkpoint selections must name saved steps
            for evaluator in study.evaluators_for(name):
                study.eval_steps(name, evaluator)
    except ValidationError as err:
        lines = [part for line in _lines(err) for part in line.splitlines()]
        raise ConfigError("invalid study config:\n  " + "\n  ".join(lines)) from None
    return study


def machine_memory_bytes() -> int:
    """The machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _model_min_bytes(model: ModelConfig) -> int:
    """A lower bound on training memory: every mixer has at least d_model² weights a layer,
    each with a gradient and two Adam moments in float32."""
    return 16 * model.n_layers * model.d_model**2


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def _grouped(problems: list[tuple[str, str]], shown: int = 3) -> list[str]:
    """One line per distinct problem, naming the first ``shown`` runs that have it."""
    runs: dict[str, list[str]] = {}
    for run, problem in problems:
        runs.setdefault(problem, []).append(run)
    lines = []
    for problem, names in runs.items():
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        lines.append(f"{problem} (run{'s' if len(names) > 1 else ''} {', '.join(names[:shown])}{more})")
    return lines


def needs_default_study(config: dict[str, Any], configfiles: Iterable[str | Path]) -> bool:
    """Whether the workflow should load the default study (``config/config.yaml``): only when no
    ``--configfile`` was given (``--config key=value`` then edits the default study). A study
    file is a whole study, never merged key by key into the default one, so one without a
    ``study:`` name is refused (ConfigError naming the files)."""
    files = [str(f) for f in configfiles]
    for path in files:  # Snakemake's own loader keeps the last of a key given twice
        load_yaml_file(path)
    if not files:
        return True
    if "study" not in config:
        raise ConfigError(f"{', '.join(files)}: no `study:` name. A study file is a whole study (tinylang does not "
                          "merge it into config/config.yaml): add `study: <name>` (its results go to "
                          "results/<name>/)")
    return False


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
    evaluators = {}
    for name in EVALUATORS.names():
        options = EVALUATORS.get(name).Options
        sub = options.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(sub.pop("$defs", {}))
        sub["description"] = (EVALUATORS.get(name).__doc__ or "").strip()
        evaluators[name] = {"oneOf": [sub, {"type": "null"}]}
    schema["properties"]["evaluators"] = {
        "type": "object", "properties": evaluators, "additionalProperties": False,
        "description": "Evaluators to run on checkpoints, by name, with their options (null: defaults).",
        "default": DEFAULT_EVALUATORS,
    }
    _describe_from_source(schema)
    return schema


def _describe_from_source(schema: dict[str, Any]) -> None:
    """Descriptions for the fields the models document with a comment (``strict.describe_fields``)."""
    from pydantic import BaseModel

    models: dict[str, type[BaseModel]] = {}
    pending = [BaseModel]
    while pending:
        for sub in pending.pop().__subclasses__():
            models.setdefault(sub.__name__, sub)
            pending.append(sub)
    describe_fields(schema, models)
    describe_fields(schema["properties"]["training"], models | {"": TrainConfig})
    for option in schema["properties"]["evaluators"]["properties"].values():
        describe_fields(option["oneOf"][0], models)
