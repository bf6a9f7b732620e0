checkpoint select:
    """Choose K of N candidates; every row of the table and every tile of the contact sheet says why."""
    input:
        unpack(select_input),
    output:
        table="results/{character}/selection.tsv",  # output[0]: rules/common.smk reads the selection from it
        sheet=report("results/{character}/selection.png", category="Selection"),
        page=report("results/{character}/selection.html", category="Selection", caption="../report/selection.rst"),
        summary="results/{character}/selection_summary.json",
    log:
        "logs/{character}/select.log",
    params:
        select=select_settings,
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/select.py"
