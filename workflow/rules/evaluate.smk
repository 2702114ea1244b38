rule evaluate:
    """Behavioural metrics of one checkpoint, per split and query type."""
    input:
        checkpoints=f"{OUT}/runs/{{run}}/checkpoints",
        language=lambda wc: language_dir(STUDY.runs[wc.run].language),
    output:
        f"{OUT}/runs/{{run}}/eval/step{{step}}/behaviour.parquet",
    params:
        evaluation=STUDY.evaluation.model_dump(mode="json"),
        device=STUDY.device,
        version=VERSION,
    log:
        f"{OUT}/logs/evaluate/{{run}}/step{{step}}.log",
    threads: 1
    resources:
        gpu=GPU,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/evaluate.py"
