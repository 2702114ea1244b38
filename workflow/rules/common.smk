# Paths and target lists shared by the rules: thin names for the study's targets
# (tinylang.targets.StudyTargets, where they are tested).
TARGETS = STUDY.targets(OUT)
language_dir = TARGETS.language_dir
eval_tables = TARGETS.eval_tables
all_eval_tables = TARGETS.all_eval_tables
study_table_outputs = TARGETS.study_tables
FIGURE_RUNS = TARGETS.figure_runs
PACKS = STUDY.packs()
PACKED = {run for runs in PACKS.values() for run in runs}
UNPACKED_RUNS = (
    "|".join(re.escape(run) for run in STUDY.run_names if run not in PACKED) or "(?!)"
)


def evaluator_threads(evaluator):
    return STUDY.threads if EVALUATORS.get(evaluator).uses_threads else 1


def study_figure_table(figure):
    return f"{OUT}/study/{study_figure(figure).table}.parquet"
