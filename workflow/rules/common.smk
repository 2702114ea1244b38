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


def all_eval_tables(evaluator):
    return [table for run in STUDY.run_names for table in eval_tables(run, evaluator)]


def evaluator_threads(evaluator):
    return STUDY.threads if EVALUATORS.get(evaluator).uses_threads else 1


def study_table_outputs():
    names = ["runs", "run_accuracy", "selection", "curves"]
    if "interventions" in STUDY.evaluators:
        names.append("mechanism")
    return {name: f"{OUT}/study/{name}.parquet" for name in names}


def all_outputs():
    figures = [f"{OUT}/figures/{name}.png" for name in ("training_curves", "language_stats")]
    if "behaviour" in STUDY.evaluators:
        figures.append(f"{OUT}/figures/accuracy.png")
    if "interventions" in STUDY.evaluators:
        figures.append(f"{OUT}/figures/attribution.png")
        figures += [f"{OUT}/figures/interventions_{run}.png" for run in STUDY.runs]
    if "behaviour" in STUDY.evaluators:
        figures += list(study_table_outputs().values())
    return figures
