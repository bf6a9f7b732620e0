rule score:
    """Per-image measures without a model: decode, size, sharpness, noise, hashes, background, figures, OCR."""
    input:
        image="results/{character}/images/{key}.png",
    output:
        "results/{character}/scores/{key}.json",
    log:
        "logs/{character}/score/{key}.log",
    params:
        settings=config["score"],
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/score.py"


rule embed:
    """Identity embedding of one image from the configured embedding model."""
    input:
        image="results/{character}/images/{key}.png",
        model=model_input(config["select"]["embedder"]),
    output:
        "results/{character}/scores/{key}.embedding.json",
    log:
        "logs/{character}/embed/{key}.log",
    params:
        model=lambda w: config["select"]["embedder"],  # a hub id has no input file
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
        gpu=gpus("select", "embedder_device"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/embed.py"


rule embed_reference:
    """Embedding of the reference image, for the near-copy guard only (the image itself never enters the dataset)."""
    input:
        image=lambda w: character(w)["reference"],
        model=model_input(config["select"]["embedder"]),
    output:
        "results/{character}/reference.embedding.json",
    log:
        "logs/{character}/embed_reference.log",
    params:
        model=lambda w: config["select"]["embedder"],  # a hub id has no input file
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
        gpu=gpus("select", "embedder_device"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/embed.py"


rule ask:
    """Yes/no answers of the caption model to select.vlm_questions about one image."""
    input:
        image="results/{character}/images/{key}.png",
        model=model_input(config["caption"]["model"]),
    output:
        "results/{character}/scores/{key}.answers.json",
    log:
        "logs/{character}/ask/{key}.log",
    params:
        questions=sorted(config["select"]["vlm_questions"]),
        settings={k: v for k, v in config["caption"].items() if k in ("backend", "model", "dtype")},
    threads: 1
    resources:
        mem_mb=model_mem_mb("caption", 16000),
        runtime=10,
        gpu=gpus("caption"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/ask.py"
