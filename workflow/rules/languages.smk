rule language:
    """Generate one language's splits (Parquet) and meta.json."""
    output:
        directory(f"{OUT}/languages/{{language}}"),
    log:
        f"{OUT}/logs/language/{{language}}.log",
    conda:
        "../envs/tinylang.yaml"
    threads: 1
    resources:
        gpu=0,
    params:
        config=lambda wc: STUDY.languages[wc.language].model_dump(mode="json"),
        version=VERSION,
    script:
        "../scripts/language.py"
