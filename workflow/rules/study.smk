rule study_tables:
    """The study's aggregate tables: runs with their coordinates, final accuracies, the best
    learning rate per configuration (picked on the selection split) with seed intervals,
    training curves and per-example attrib."""
    input:
        behaviour=all_eval_tables("behaviour"),
        interventions=all_eval_tables("interventions"),
    output:
        **study_table_outputs(),
    params:
        coords=[STUDY.run(run).coords() for run in STUDY.run_names],
        splits={name: list(language.splits) for name, language in STUDY.languages.items()},
    log:
        f"{OUT}/logs/study/tables.log",
    threads: 1
    resources:
        gpu=0,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/study_tables.py"
