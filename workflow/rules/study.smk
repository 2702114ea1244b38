rule study_tables:
    """The study's aggregate tables: runs with their coordinates, final accuracies, the best
    learning rate per configuration (picked on the selection split) with seed intervals,
    training curves and per-example attrib. Runs that failed (a NaN or infinite loss) are listed
    with their status and never selected."""
    input:
        behaviour=all_eval_dirs("behaviour"),
        interventions=all_eval_dirs("interventions"),
        status=expand(f"{OUT}/runs/{{run}}/status.json", run=STUDY.run_names),
    output:
        **study_table_outputs(),
    log:
        f"{OUT}/logs/study/tables.log",
    conda:
        "../envs/tinylang.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        coords=[STUDY.run(run).coords() for run in STUDY.run_names],
        splits={
            name: list(language.splits) for name, language in STUDY.languages.items()
        },
    script:
        "../scripts/study_tables.py"


rule study_summary:
    """The study at a glance for the report's landing page: per configuration, the best learning
    rate's accuracy and the median Attrib of the kept runs, as a table and as the report's text.
    """
    input:
        runs=f"{OUT}/study/runs.parquet",
        selection=f"{OUT}/study/selection.parquet",
        curves=f"{OUT}/study/curves.parquet",
        description=os.path.join(workflow.basedir, "report", "workflow.rst"),
    output:
        table=f"{OUT}/report/summary.parquet",
        page=TARGETS.summary_page,
    log:
        f"{OUT}/logs/study/summary.log",
    conda:
        "../envs/tinylang.yaml"
    threads: 1
    resources:
        gpu=0,
    script:
        "../scripts/study_summary.py"
