rule train:
    """Train one run; checkpoints at the configured steps, a train log and the run's status: "ok",
    or "failed" (with the step, learning rate and reason) when its loss became NaN or infinite;
    a failed run keeps its checkpoints before that step and the workflow goes on. A killed job
    leaves its resumable state in runs/<run>/partial, from which the rerun continues."""
    input:
        language=lambda wc: language_dir(STUDY.run(wc.run).language),
    output:
        checkpoints=directory(f"{OUT}/runs/{{run}}/checkpoints"),
        log=f"{OUT}/runs/{{run}}/train_log.parquet",
        status=f"{OUT}/runs/{{run}}/status.json",
    log:
        f"{OUT}/logs/train/{{run}}.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{run}}.tsv"
    conda:
        "../envs/tinylang.yaml"
    threads: STUDY.threads
    resources:
        gpu=GPU,
    params:
        model=lambda wc: STUDY.run(wc.run).model.model_dump(mode="json"),
        train=lambda wc: STUDY.run(wc.run).train.model_dump(mode="json"),
        device=STUDY.device,
        version=VERSION,
    script:
        "../scripts/train.py"
