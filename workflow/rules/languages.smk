rule language:
    """Generate one language's splits (Parquet) and meta.json."""
    output:
        directory(f"{OUT}/languages/{{language}}"),
    params:
        config=lambda wc: STUDY.languages[wc.language].model_dump(mode="json"),
        version=VERSION,
    log:
        f"{OUT}/logs/language/{{language}}.log",
    threads: 1
    resources:
        gpu=0,
    conda:
        "../../envs/tinylang.yaml"
    script:
        "../scripts/language.py"
