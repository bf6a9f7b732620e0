rule dataset:
    """Assemble the kohya dataset folder (copies of the selected images + their captions), tag
    frequencies and a contact sheet of the images with their captions."""
    input:
        unpack(dataset_input),
    output:
        # update(): a failing rebuild keeps the last good outputs (Snakemake backs them up, restores them)
        dataset=update(directory("results/{character}/dataset")),
        tag_frequency=update("results/{character}/tag_frequency.json"),
        sheet=update(report("results/{character}/dataset.png", category="Dataset", caption="../report/dataset_sheet.rst")),
    log:
        "logs/{character}/dataset.log",
    params:
        subset=lambda w: subset_dir(config, w.character),  # {repeats}_{trigger}; a group's: {repeats}_{group}
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/dataset.py"


rule dataset_manifest:
    """Per dataset image: its key, source, backend, model, prompt, seed, size, time, scores and the
    reason it was selected."""
    input:
        unpack(dataset_manifest_input),
    output:
        update("results/{character}/dataset_manifest.json"),
    log:
        "logs/{character}/dataset_manifest.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/dataset_manifest.py"
