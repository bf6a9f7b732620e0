rule build_demo_models:
    """Build the tiny random-weight demo models (SDXL and SD1.5 pipelines, vision-language model, CLIP embedder)."""
    output:
        sdxl=directory(f"{DEMO}/sdxl"),
        sd15=directory(f"{DEMO}/sd15"),
        vlm=directory(f"{DEMO}/vlm"),
        embedder=directory(f"{DEMO}/embedder"),
    log:
        "logs/build_demo_models.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/build_demo_models.py"
