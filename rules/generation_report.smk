rule generation_report:
    """Per character: shots generated and failed (with reasons), summed API usage, reference use."""
    input:
        unpack(generation_report_input),
    output:
        report("results/{character}/generation_report.json", category="Generation"),
    log:
        "logs/{character}/generation_report.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/generation_report.py"


onsuccess:
    for line in summary_lines([f"results/{c}/generation_report.json" for c in CHARACTERS]):
        print(line)
