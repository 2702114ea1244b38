rule evaluate:
    """One evaluator (behaviour, interventions, attention, probes, ...) on one checkpoint (an
    empty table with the evaluator's columns for a checkpoint a failed run never wrote).
    """
    input:
        checkpoints=f"{OUT}/runs/{{run}}/checkpoints",
        status=f"{OUT}/runs/{{run}}/status.json",
        language=lambda wc: language_dir(STUDY.run(wc.run).language),
    output:
        f"{OUT}/runs/{{run}}/eval/step{{step}}/{{evaluator}}.parquet",
    log:
        f"{OUT}/logs/{{evaluator}}/{{run}}/step{{step}}.log",
    benchmark:
        f"{OUT}/benchmarks/{{evaluator}}/{{run}}/step{{step}}.tsv"
    conda:
        "../envs/tinylang.yaml"
    threads: lambda wc: evaluator_threads(wc.evaluator)
    resources:
        gpu=GPU,
    params:
        options=lambda wc: STUDY.evaluator_options(wc.evaluator).model_dump(
            mode="json", by_alias=True
        ),
        device=STUDY.device,
        version=VERSION,
    script:
        "../scripts/evaluate.py"
