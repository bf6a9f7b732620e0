rule train:
    """Train the character LoRA (builtin or kohya sd-scripts, train.backend) into the training's folder,
    named by its fingerprint: one file per saved epoch (kohya key format, ss_* metadata), the summary,
    the loss curve, and a resumable state (state/) and sample images (samples/) beside them."""
    input:
        unpack(train_input),
    output:
        loras=epoch_loras("{character}", "{fingerprint}"),
        summary="results/{character}/train/{fingerprint}/summary.json",
        loss_curve=report("results/{character}/train/{fingerprint}/loss_curve.png", category="Training"),
    log:
        "logs/{character}/train/{fingerprint}.log",
    benchmark:
        "benchmarks/{character}/train/{fingerprint}.tsv"
    params:
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
    """Deliver the chosen epoch of the current training as lora/{character}.safetensors: a copy, so
    that nothing done to one file reaches the other."""
    input:
        unpack(delivered_epoch_lora),
    output:
        update("results/{character}/lora/{character}.safetensors"),  # a failed delivery keeps the last good file
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
