rule kohya_config:
    """Write sd-scripts' dataset.toml and train.toml from the train config."""
    input:
        unpack(kohya_config_input),
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
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/kohya_config.py"


rule training_fingerprint:
    """Record what the LoRA will depend on; a new fingerprint is what makes train rerun."""
    input:
        selection=ancient("results/{character}/selection.tsv"),
    output:
        "results/{character}/kohya/fingerprint/{fingerprint}.json",
    log:
        "logs/{character}/training_fingerprint/{fingerprint}.log",
    params:
        inputs=training_inputs_of,
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/training_fingerprint.py"
