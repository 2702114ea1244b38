rule interventions:
    """Interchange interventions (pyvene) on one checkpoint: layers × components × positions."""
    input:
        checkpoints=f"{OUT}/runs/{{run}}/checkpoints",
        language=lambda wc: language_dir(STUDY.runs[wc.run].language),
    output:
        f"{OUT}/runs/{{run}}/eval/step{{step}}/interventions.parquet",
    params:
        interventions=STUDY.interventions.model_dump(mode="json"),
        device=STUDY.device,
        version=VERSION,
    log:
        f"{OUT}/logs/interventions/{{run}}/step{{step}}.log",
    benchmark:
        f"{OUT}/benchmarks/interventions/{{run}}/step{{step}}.tsv"
    threads: STUDY.threads
    resources:
        gpu=GPU,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/interventions.py"
