rule kohya_config:
    """Write sd-scripts' dataset.toml and train.toml (and the sample prompts) into the training's
    folder, named by its fingerprint, with fingerprint.json: what the fingerprint was made of."""
    input:
        # the selected keys are in the fingerprint that names the outputs (ancient: a rewrite with
        # the same keys is no reason to rerun); an input so that the job waits for the checkpoint
        selection=ancient("results/{character}/selection.tsv"),
    output:
        dataset_toml="results/{character}/train/{fingerprint}/dataset.toml",
        train_toml="results/{character}/train/{fingerprint}/train.toml",
        sample_prompts="results/{character}/train/{fingerprint}/sample_prompts.txt",
        fingerprint="results/{character}/train/{fingerprint}/fingerprint.json",
    log:
        "logs/{character}/kohya_config/{fingerprint}.log",
    params:
        # only what the fingerprint holds: another change (train.device, the latent cache) rewrites nothing
        inputs=training_inputs_of,
        sample_prompts=sample_prompt_lines(config["train"]),
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/kohya_config.py"
