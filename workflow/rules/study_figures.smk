rule study_figure:
    """A figure of the whole study (accuracy against width, mechanism scatter and boxes, training
    curves, generalisation), drawn from one of the study tables and saved with the table it shows;
    the paper's numbers for the study (config/paper/reference.csv) are drawn beside ours.
    """
    input:
        table=lambda wc: study_figure_table(wc.figure),
        reference=os.path.join(ROOT, "config", "paper", "reference.csv"),
    output:
        png=report(
            f"{OUT}/figures/study/{{figure}}.png",
            caption="../report/study_figure.rst",
            category="Study",
        ),
        pdf=f"{OUT}/figures/study/{{figure}}.pdf",
        table=f"{OUT}/figures/study/{{figure}}.parquet",
    log:
        f"{OUT}/logs/figures/study/{{figure}}.log",
    conda:
        "../envs/tinylang.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        study=STUDY.paper_study or STUDY.study,
    script:
        "../scripts/study_figure.py"
