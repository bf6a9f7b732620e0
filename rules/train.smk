rule train:
    """Train the character LoRA from the dataset and TOMLs (kohya key format, ss_* metadata)."""
    input:
        unpack(train_input),
    output:
        lora="results/{character}/lora/{character}.safetensors",
        summary="results/{character}/lora/train_summary.json",
    log:
        "logs/{character}/train.log",
    benchmark:
        "benchmarks/{character}/train.tsv"
    params:
        fingerprint=train_fingerprint,
        family=config["train"]["family"],
    threads: workflow.cores
    resources:
        mem_mb=16000,
        runtime=240,
    script:
        "../scripts/train.py"
