rule dataset:
    """Assemble the kohya dataset folder (hard links + captions), tag frequencies, the provenance manifest
    and a contact sheet of the images with their captions."""
    input:
        unpack(dataset_input),
    output:
        dataset=directory("results/{character}/dataset"),
        tag_frequency="results/{character}/tag_frequency.json",
        manifest="results/{character}/dataset_manifest.json",
        sheet=report("results/{character}/dataset.png", category="Dataset", caption="../report/dataset_sheet.rst"),
    log:
        "logs/{character}/dataset.log",
    params:
        subset=lambda w: f"{config['train']['num_repeats']}_{character(w)['trigger']}",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/dataset.py"
