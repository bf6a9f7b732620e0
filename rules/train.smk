rule train:
    """Train the character LoRA (builtin or kohya sd-scripts, train.backend), keeping one file per
    saved epoch (kohya key format, ss_* metadata), the loss curve, and a resumable state in lora/state/."""
    input:
        unpack(train_input),
    output:
        loras=epoch_loras("{character}"),
        summary="results/{character}/lora/train_summary.json",
        loss_curve=report("results/{character}/lora/loss_curve.png", category="Training"),
    log:
        "logs/{character}/train.log",
    benchmark:
        "benchmarks/{character}/train.tsv"
    params:
        fingerprint=train_fingerprint,
        family=config["train"]["family"],
    threads: workflow.cores
    resources:
        mem_mb=32000,  # SDXL loaded in float32 before casting, plus the latent cache
        runtime=240,
        gpu=gpus("train"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/train.py"


rule deliver_lora:
    """Deliver the chosen epoch's LoRA as lora/{character}.safetensors (a copy: Snakemake touches a
    job's outputs, and through a hard link it would touch the epoch file and re-stale its evaluation)."""
    input:
        unpack(delivered_epoch_lora),
    output:
        "results/{character}/lora/{character}.safetensors",
    log:
        "logs/{character}/deliver_lora.log",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/deliver_lora.py"
