rule build_demo_models:
    """Build the tiny random-weight demo models (SDXL and SD1.5 pipelines, vision-language model, CLIP
    embedder), and the SDXL and SD1.5 again as single-file checkpoints with their components folders."""
    output:
        sdxl=directory(f"{DEMO}/sdxl"),
        sd15=directory(f"{DEMO}/sd15"),
        vlm=directory(f"{DEMO}/vlm"),
        embedder=directory(f"{DEMO}/embedder"),
        sdxl_file=f"{DEMO}/sdxl.safetensors",
        sd15_file=f"{DEMO}/sd15.safetensors",
        sdxl_components=directory(f"{DEMO}/sdxl-components"),
        sd15_components=directory(f"{DEMO}/sd15-components"),
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
