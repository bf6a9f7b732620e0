rule generate:
    """Render one planned shot; its key names everything that determines its pixels."""
    input:
        unpack(generate_input),
    output:
        image="results/{character}/images/{key}.png",
        provenance="results/{character}/images/{key}.json",
    log:
        "logs/{character}/generate/{key}.log",
    benchmark:
        "benchmarks/{character}/generate/{key}.tsv"
    params:
        shot=shot_of,
    threads: 1
    resources:
        api_calls=api_calls("generate"),
        mem_mb=model_mem_mb("generate", 12000),  # SDXL fp16 + VAE decode
        runtime=15,
        gpu=gpus("generate"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/generate.py"
