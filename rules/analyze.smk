rule analyze:
    """Describe the character as JSON that validates against its feature schema."""
    input:
        unpack(analyze_input),
    output:
        features="results/{character}/features.json",
        raw="results/{character}/features.raw.json",
        usage="results/{character}/analysis_usage.json",
    log:
        "logs/{character}/analyze.log",
    params:
        settings=analyze_settings,
    localrule: config["analyze"]["backend"] == "manual"  # copying a file: never a cluster job
    threads: 1
    resources:
        api_calls=api_calls("analyze"),
        mem_mb=model_mem_mb("analyze", 16000),  # a 7B VLM in half precision
        runtime=30,
        gpu=gpus("analyze"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/analyze.py"
