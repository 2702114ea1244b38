rule evaluate:
    """Every evaluator scheduled at one checkpoint (behaviour, interventions, attention, probes,
    ...), one table each in the checkpoint's folder; a table the job computed before with the
    same inputs and options comes from the run's evaluation cache (runs/<run>/eval_cache). A
    checkpoint a failed run never wrote gets empty tables with the evaluators' columns.
    """
    input:
        checkpoints=f"{OUT}/runs/{{run}}/checkpoints",
        status=f"{OUT}/runs/{{run}}/status.json",
        language=lambda wc: language_dir(STUDY.run(wc.run).language),
    output:
        directory(f"{OUT}/runs/{{run}}/eval/step{{step}}"),
    log:
        f"{OUT}/logs/evaluate/{{run}}/step{{step}}.log",
    benchmark:
        f"{OUT}/benchmarks/evaluate/{{run}}/step{{step}}.tsv"
    conda:
        "../envs/tinylang.yaml"
    threads: lambda wc: checkpoint_threads(wc.run, wc.step)
    resources:
        gpu=GPU,
    params:
        evaluators=lambda wc: checkpoint_evaluators(wc.run, wc.step),
        cache=lambda wc: TARGETS.eval_cache(wc.run, wc.step),
        device=STUDY.device,
        version=VERSION,
    script:
        "../scripts/evaluate.py"
