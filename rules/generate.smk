GENERATE_OUTPUT = dict(
    image="results/{character}/images/{key}.png",
    provenance="results/{character}/images/{key}.json",
)
GENERATE_RESOURCES = dict(
    api_calls=api_calls("generate"),
    mem_mb=model_mem_mb("generate", 12000),  # SDXL fp16 + VAE decode
    runtime=15,
    gpu=gpus("generate"),
)

if uses_api(config, "generate"):
    # An API call waits; it does not compute. Each shot runs as a thread of the snakemake process
    # (`run:`, with force-use-threads from profiles/default) instead of a Python process of its own,
    # whose start-up (interpreter, snakemake and openai imports: ~1.3 s of CPU) cost more than the
    # call (bench/api_throughput.py). Ctrl-C reaches these threads through cancel_on_interrupt().
    cancel_on_interrupt()

    rule generate:
        """Render one planned shot through the Images API; its key names everything that determines its pixels."""
        input:
            unpack(generate_input),
        output:
            **GENERATE_OUTPUT,
        log:
            "logs/{character}/generate/{key}.log",
        params:
            shot=shot_of,
        threads: 1
        resources:
            **GENERATE_RESOURCES,
        run:
            generate_shot_in_thread(log[0], params.shot, config["generate"], input.get("reference"), output.image,
                                    output.provenance, backdrop_colour(params.shot, config))

else:

    rule generate:
        """Render one planned shot; its key names everything that determines its pixels."""
        input:
            unpack(generate_input),
        output:
            **GENERATE_OUTPUT,
        log:
            "logs/{character}/generate/{key}.log",
        benchmark:
            "benchmarks/{character}/generate/{key}.tsv"
        params:
            shot=shot_of,
        threads: 1
        resources:
            **GENERATE_RESOURCES,
        conda:
            "../envs/pipeline.yaml"
        script:
            "../scripts/generate.py"
