checkpoint select:
    """Choose K of N candidates; every row of the table says why."""
    input:
        unpack(select_input),
    output:
        report("results/{character}/selection.tsv", category="Selection"),
    log:
        "logs/{character}/select.log",
    params:
        select=config["select"],
        size=[config["plan"]["width"], config["plan"]["height"]],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/select.py"
