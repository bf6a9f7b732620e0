rule caption:
    """Caption one selected image: trigger word first, then a tag per varying category."""
    input:
        image="results/{character}/images/{key}.png",
        model=model_input(config["caption"]["model"]),
    output:
        "results/{character}/captions/{key}.txt",
    log:
        "logs/{character}/caption/{key}.log",
    params:
        settings=caption_settings,
    threads: 1
    resources:
        api_calls=api_calls("caption"),
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/caption.py"
