# The per-run figures. Each draws one table from the runs' files, saves it beside the figure
# (workflow/scripts/figure.py: the rule's name is the figure's name in
# tinylang.figures.registry.RUN_FIGURES) and shares the rest of the rule with `accuracy`.


# Answer accuracy per run across checkpoints, and at the final one per split.
rule accuracy:
    input:
        tables=all_eval_dirs("behaviour", FIGURE_RUNS),
    output:
        png=report(
            f"{OUT}/figures/accuracy.png",
            caption="../report/accuracy.rst",
            category="Behaviour",
        ),
        pdf=f"{OUT}/figures/accuracy.pdf",
        table=f"{OUT}/figures/accuracy.parquet",
    log:
        f"{OUT}/logs/figures/accuracy.log",
    conda:
        "../envs/tinylang.yaml"
    threads: 1
    resources:
        gpu=0,
    script:
        "../scripts/figure.py"


# Loss against step for every run.
use rule accuracy as training_curves with:
    input:
        logs=expand(f"{OUT}/runs/{{run}}/train_log.parquet", run=FIGURE_RUNS),
    output:
        png=report(
            f"{OUT}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
        ),
        pdf=f"{OUT}/figures/training_curves.pdf",
        table=f"{OUT}/figures/training_curves.parquet",
    log:
        f"{OUT}/logs/figures/training_curves.log",
    params:
        names=FIGURE_RUNS,


# Restored answer probability per layer × position, faceted by component and corrupted item.
use rule accuracy as intervention_heatmap with:
    input:
        tables=lambda wc: eval_dirs(wc.run, "interventions"),
    output:
        png=report(
            f"{OUT}/figures/interventions_{{run}}.png",
            caption="../report/intervention_heatmap.rst",
            category="Interventions",
        ),
        pdf=f"{OUT}/figures/interventions_{{run}}.pdf",
        table=f"{OUT}/figures/interventions_{{run}}.parquet",
    log:
        f"{OUT}/logs/figures/interventions_{{run}}.log",


# Generation statistics (document length, distances, ...) per language and split.
use rule accuracy as language_stats with:
    input:
        languages=[language_dir(name) for name in STUDY.languages],
    output:
        png=report(
            f"{OUT}/figures/language_stats.png",
            caption="../report/language_stats.rst",
            category="Languages",
        ),
        pdf=f"{OUT}/figures/language_stats.pdf",
        table=f"{OUT}/figures/language_stats.parquet",
    log:
        f"{OUT}/logs/figures/language_stats.log",
    params:
        names=list(STUDY.languages),


# Attrib (restored share of the answer's probability) at @Key / @Value / @Query per run.
use rule accuracy as attribution with:
    input:
        tables=all_eval_dirs("interventions", FIGURE_RUNS),
    output:
        png=report(
            f"{OUT}/figures/attribution.png",
            caption="../report/attribution.rst",
            category="Interventions",
        ),
        pdf=f"{OUT}/figures/attribution.pdf",
        table=f"{OUT}/figures/attribution.parquet",
    log:
        f"{OUT}/logs/figures/attribution.log",
