# Paths and target lists shared by the rules.


def language_dir(name):
    return f"{OUT}/languages/{name}"


def run_dir(run):
    return f"{OUT}/runs/{run}"


def eval_tables(run, evaluator):
    """The evaluator's tables of every checkpoint it analyses for this run (none if it does not apply)."""
    if evaluator not in STUDY.evaluators_for(run):
        return []
    return [f"{run_dir(run)}/eval/step{s}/{evaluator}.parquet" for s in STUDY.eval_steps(run, evaluator)]


def all_eval_tables(evaluator, runs=None):
    return [table for run in (STUDY.run_names if runs is None else runs) for table in eval_tables(run, evaluator)]


# Figures with a line or box per run show the study's named runs; a study of swept runs only
# shows them all when there are few (larger sweeps are read through the study figures).
MAX_RUNS_PER_FIGURE = 16
FIGURE_RUNS = list(STUDY.runs) or (STUDY.run_names if len(STUDY.run_names) <= MAX_RUNS_PER_FIGURE else [])


def evaluator_threads(evaluator):
    return STUDY.threads if EVALUATORS.get(evaluator).uses_threads else 1


def study_table_outputs():
    names = ["runs", "run_accuracy", "selection", "curves"]
    if "interventions" in STUDY.evaluators:
        names += ["mechanism", "dropped_runs"]
    return {name: f"{OUT}/study/{name}.parquet" for name in names}


def study_figures():
    """The study figures this study can draw: mechanism figures need interventions, the
    generalisation figure a language with a dev split, ``mechanism_by_<axis>`` an extra sweep axis."""
    if "behaviour" not in STUDY.evaluators:
        return []
    names = ["accuracy_vs_width", "study_training_curves"]
    if any("dev" in language.splits for language in STUDY.languages.values()):
        names.append("generalisation")
    if "interventions" in STUDY.evaluators:
        names += ["mechanism_scatter", "mechanism_boxes", "mechanism_layers"]
        if any(STUDY.run(run).model.n_layers > 1 for run in STUDY.run_names):
            names.append("mechanism_by_layer")
        core = {"run", "language", "mixer", "d_model", "n_layers", "pos_embed", "lr", "seed"}
        extra = {axis for run in STUDY.run_names for axis in STUDY.run(run).coords() if axis not in core}
        names += [f"mechanism_by_{axis}" for axis in sorted(extra)]
        if len(intervention_splits()) > 1:
            names.append("mechanism_by_split")
    return names


def intervention_splits():
    """Every split the interventions evaluator reads in some language of the study."""
    chosen = STUDY.evaluator_options("interventions").splits
    return {split for language in STUDY.languages.values() for split in (chosen or language.splits)
            if split in language.splits}


def study_figure_table(figure):
    name = "mechanism" if figure.startswith("mechanism_by_") else STUDY_FIGURES[figure][0]
    return f"{OUT}/study/{name}.parquet"


def all_outputs():
    figures = [f"{OUT}/figures/language_stats.png"]
    if FIGURE_RUNS:
        figures.append(f"{OUT}/figures/training_curves.png")
        if "behaviour" in STUDY.evaluators:
            figures.append(f"{OUT}/figures/accuracy.png")
        if "interventions" in STUDY.evaluators:
            figures.append(f"{OUT}/figures/attribution.png")
    if "interventions" in STUDY.evaluators:
        figures += [f"{OUT}/figures/interventions_{run}.png" for run in STUDY.runs]
    if "behaviour" in STUDY.evaluators:
        figures += list(study_table_outputs().values())
    figures += [f"{OUT}/figures/study/{name}.png" for name in study_figures()]
    tables = [table for evaluator in STUDY.evaluators for table in all_eval_tables(evaluator)]
    return figures + tables
