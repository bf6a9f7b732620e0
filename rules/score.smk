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
        measures=MEASURES_VERSION,  # new measures: scores are remade
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
        image="results/{character}/reference.png",  # as every model sees it (rule reference)
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
    """Yes/no answers of the caption model about one image: select.vlm_questions, and one question per
    must-preserve feature the shot's framing shows (select.feature_checks)."""
    input:
        image="results/{character}/images/{key}.png",
        model=model_input(config["caption"]["model"]),
        # ancient(): what the questions ask is their text (params), not the file's date
        features=ancient("results/{character}/features.json"),
    output:
        "results/{character}/scores/{key}.answers.json",
    log:
        "logs/{character}/ask/{key}.log",
    params:
        questions=ask_questions,
        # the captioner's settings (its openai connection too); the device does not change answers
        settings={k: v for k, v in config["caption"].items() if k != "device"},
    threads: 1
    resources:
        api_calls=api_calls("caption"),
        mem_mb=model_mem_mb("caption", 16000),
        runtime=10,
        gpu=gpus("caption"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/ask.py"


rule observe:
    """Tags the caption model sees in one image (view, pose, expression, framing, background), before
    selection: for images without planned tags, or to check the generator's drift (select.observe_tags)."""
    input:
        # ancient(), as for captions: the key names the image's content, so a new timestamp is no
        # reason to ask (and pay for) the caption model again
        image=ancient("results/{character}/images/{key}.png"),
        model=model_input(config["caption"]["model"]),
    output:
        "results/{character}/scores/{key}.tags.json",
    log:
        "logs/{character}/observe/{key}.log",
    params:
        settings=observe_settings,
    threads: 1
    resources:
        api_calls=api_calls("caption"),
        mem_mb=model_mem_mb("caption", 16000),
        runtime=10,
        gpu=gpus("caption"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/observe.py"
