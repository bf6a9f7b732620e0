rule analyze:
    """Describe the character as JSON that validates against its feature schema."""
    input:
        unpack(analyze_input),
    output:
        features="results/{character}/features.json",
        raw="results/{character}/features.raw.json",
    log:
        "logs/{character}/analyze.log",
    params:
        settings=analyze_settings,
    threads: 1
    resources:
        api_calls=api_calls("analyze"),
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/analyze.py"
