rule train:
    """Train one run; checkpoints at the configured steps, a train log and the run's status: "ok",
    or "failed" (with the step, learning rate and reason) when its loss became NaN or infinite;
    a failed run keeps its checkpoints before that step and the workflow goes on. A killed job
    leaves its resumable state in runs/<run>/partial, from which the rerun continues. The runs
    of a pack (the study's `pack`) are the pack rule's instead."""
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
    wildcard_constraints:
        run=UNPACKED_RUNS,
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


# One rule per pack (STUDY.packs(): runs that differ only in learning rate and seed, at most
# `pack.max_runs` of them): the same outputs as `train` for each of its runs, in one job, with
# the resources and threads a profile gives `train` (common.smk: like_train).
for PACK, PACK_RUNS in PACKS.items():

    rule:
        name:
            f"train_{PACK}"
        input:
            language=language_dir(STUDY.run(PACK_RUNS[0]).language),
        output:
            checkpoints=[
                directory(f"{OUT}/runs/{run}/checkpoints") for run in PACK_RUNS
            ],
            log=[f"{OUT}/runs/{run}/train_log.parquet" for run in PACK_RUNS],
            status=[f"{OUT}/runs/{run}/status.json" for run in PACK_RUNS],
        log:
            f"{OUT}/logs/train/{PACK}.log",
        benchmark:
            f"{OUT}/benchmarks/train/{PACK}.tsv"
        conda:
            "../envs/tinylang.yaml"
        threads: PACK_THREADS
        resources:
            **{"gpu": GPU, **PACK_RESOURCES},
        params:
            runs=PACK_RUNS,
            models=[STUDY.run(run).model.model_dump(mode="json") for run in PACK_RUNS],
            trains=[STUDY.run(run).train.model_dump(mode="json") for run in PACK_RUNS],
            device=STUDY.device,
            version=VERSION,
        script:
            "../scripts/train_pack.py"
