rule kohya_config:
    """Write sd-scripts' dataset.toml and train.toml from the train config."""
    output:
        dataset_toml="results/{character}/kohya/dataset.toml",
        train_toml="results/{character}/kohya/train.toml",
        sample_prompts="results/{character}/kohya/sample_prompts.txt",
    log:
        "logs/{character}/kohya_config.log",
    params:
        train=config["train"],
        trigger=lambda w: character(w)["trigger"],
        dataset_dir=dataset_dir,
        output_dir=lora_dir,
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/kohya_config.py"
