rule caption:
    """Caption one selected image: trigger word first, then a tag per varying category."""
    input:
        # ancient(): the key names the image's content (an image made again for its key is the same
        # picture), so its new timestamp is no reason to caption (and pay for) it again
        image=ancient("results/{character}/images/{key}.png"),
        model=model_input(config["caption"]["model"]),
    output:
        caption="results/{character}/captions/{key}.txt",
        usage="results/{character}/captions/{key}.usage.json",
    log:
        "logs/{character}/caption/{key}.log",
    params:
        settings=caption_settings,
    threads: 1
    resources:
        api_calls=api_calls("caption"),
        mem_mb=model_mem_mb("caption", 16000),  # a 7B VLM in half precision
        runtime=10,
        gpu=gpus("caption"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/caption.py"
