rule training_curves:
    """Loss against step for every run."""
    input:
        logs=expand(f"{OUT}/runs/{{run}}/train_log.parquet", run=FIGURE_RUNS),
    output:
        png=report(f"{OUT}/figures/training_curves.png", caption="../report/training_curves.rst", category="Training"),
        pdf=f"{OUT}/figures/training_curves.pdf",
        table=f"{OUT}/figures/training_curves.parquet",
    params:
        names=FIGURE_RUNS,
    log:
        f"{OUT}/logs/figures/training_curves.log",
    threads: 1
    resources:
        gpu=0,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/figure.py"


rule accuracy:
    """Answer accuracy per run across checkpoints, and at the final one per split."""
    input:
        tables=all_eval_tables("behaviour", FIGURE_RUNS),
    output:
        png=report(f"{OUT}/figures/accuracy.png", caption="../report/accuracy.rst", category="Behaviour"),
        pdf=f"{OUT}/figures/accuracy.pdf",
        table=f"{OUT}/figures/accuracy.parquet",
    log:
        f"{OUT}/logs/figures/accuracy.log",
    threads: 1
    resources:
        gpu=0,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/figure.py"


rule intervention_heatmap:
    """Restored answer probability per layer × position, faceted by component and corrupted item."""
    input:
        tables=lambda wc: eval_tables(wc.run, "interventions"),
    output:
        png=report(f"{OUT}/figures/interventions_{{run}}.png", caption="../report/intervention_heatmap.rst", category="Interventions"),
        pdf=f"{OUT}/figures/interventions_{{run}}.pdf",
        table=f"{OUT}/figures/interventions_{{run}}.parquet",
    log:
        f"{OUT}/logs/figures/interventions_{{run}}.log",
    threads: 1
    resources:
        gpu=0,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/figure.py"


rule language_stats:
    """Generation statistics (document length, distances, ...) per language and split."""
    input:
        languages=[language_dir(name) for name in STUDY.languages],
    output:
        png=report(f"{OUT}/figures/language_stats.png", caption="../report/language_stats.rst", category="Languages"),
        pdf=f"{OUT}/figures/language_stats.pdf",
        table=f"{OUT}/figures/language_stats.parquet",
    params:
        names=list(STUDY.languages),
    log:
        f"{OUT}/logs/figures/language_stats.log",
    threads: 1
    resources:
        gpu=0,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/figure.py"


rule attribution:
    """attrib (restored share of the answer's probability) at @Key / @Value / @Query per run."""
    input:
        tables=all_eval_tables("interventions", FIGURE_RUNS),
    output:
        png=report(f"{OUT}/figures/attribution.png", caption="../report/attribution.rst", category="Interventions"),
        pdf=f"{OUT}/figures/attribution.pdf",
        table=f"{OUT}/figures/attribution.parquet",
    log:
        f"{OUT}/logs/figures/attribution.log",
    threads: 1
    resources:
        gpu=0,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/figure.py"
