# Paths and target lists shared by the rules.


def language_dir(name):
    return f"{OUT}/languages/{name}"


def run_dir(run):
    return f"{OUT}/runs/{run}"


def behaviour_tables(run):
    return [f"{run_dir(run)}/eval/step{s}/behaviour.parquet" for s in STUDY.eval_steps(run, STUDY.evaluation)]


def intervention_tables(run):
    return [
        f"{run_dir(run)}/eval/step{s}/interventions.parquet"
        for s in STUDY.eval_steps(run, STUDY.interventions)
    ]


def all_outputs():
    figures = [f"{OUT}/figures/{name}.png" for name in ("training_curves", "accuracy", "language_stats", "attribution")]
    figures += [f"{OUT}/figures/interventions_{run}.png" for run in STUDY.runs]
    return figures
