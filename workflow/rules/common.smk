# Paths and target lists shared by the rules: thin names for the study's targets
# (tinylang.targets.StudyTargets, where they are tested).
TARGETS = STUDY.targets(OUT)
language_dir = TARGETS.language_dir
eval_dirs = TARGETS.eval_dirs
all_eval_dirs = TARGETS.all_eval_dirs
study_table_outputs = TARGETS.study_tables
FIGURE_RUNS = TARGETS.figure_runs
PACKS = STUDY.packs()
PACKED = {run for runs in PACKS.values() for run in runs}
UNPACKED_RUNS = (
    "|".join(re.escape(run) for run in STUDY.run_names if run not in PACKED) or "(?!)"
)


def like_train():
    """The resources and threads the profile or command line sets for rule ``train``
    (``set-resources``, ``set-threads``); each pack takes them too, since its rule's name is made
    per study (train_pack-<run>) and so no profile can name it."""
    settings = workflow.resource_settings
    resources = {
        name: getattr(value, "raw", value)
        for name, value in settings.overwrite_resources.get("train", {}).items()
    }
    threads = settings.overwrite_threads.get("train")
    return resources, (
        STUDY.threads if threads is None else getattr(threads, "raw", threads)
    )


PACK_RESOURCES, PACK_THREADS = like_train()


def checkpoint_evaluators(run, step):
    """Evaluator name → options for each evaluator of ``run``'s checkpoint at ``step``."""
    names = STUDY.evaluators_at(run, int(step))
    return {
        name: STUDY.evaluator_options(name).model_dump(mode="json", by_alias=True)
        for name in names
    }


def checkpoint_threads(run, step):
    names = STUDY.evaluators_at(run, int(step))
    uses_threads = any(EVALUATORS.get(name).uses_threads for name in names)
    return STUDY.threads if uses_threads else 1


def study_figure_table(figure):
    return f"{OUT}/study/{study_figure(figure).table}.parquet"
