rule score:
    """Cheap per-image measures: decode check, size, sharpness, perceptual hashes."""
    input:
        image="results/{character}/images/{key}.png",
    output:
        "results/{character}/scores/{key}.json",
    log:
        "logs/{character}/score/{key}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/score.py"
