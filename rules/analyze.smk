rule analyze:
    """Describe the character as JSON that validates against its feature schema."""
    input:
        unpack(analyze_input),
    output:
        # update(): an analysis that fails (invalid JSON after retries) keeps the last good features
        features=update("results/{character}/features.json"),
        raw=update("results/{character}/features.raw.json"),
        usage=update("results/{character}/analysis_usage.json"),
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


rule reference:
    """The reference as every model sees it (synthlora.reference): 8-bit RGB, 16-bit and palette
    pictures converted faithfully, transparency laid on characters.<name>.reference_background."""
    input:
        lambda w: character(w)["reference"],
    output:
        "results/{character}/reference.png",
    log:
        "logs/{character}/reference.log",
    params:
        background=lambda w: character(w)["reference_background"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/reference.py"
