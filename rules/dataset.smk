rule dataset:
    """Assemble the kohya dataset folder (hard links + captions), tag frequencies and the provenance manifest."""
    input:
        unpack(dataset_input),
    output:
        dataset=directory("results/{character}/dataset"),
        tag_frequency="results/{character}/tag_frequency.json",
        manifest="results/{character}/dataset_manifest.json",
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
