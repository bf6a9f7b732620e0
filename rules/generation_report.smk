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


rule api_usage:
    """Per character: API calls, images and tokens actually spent on the current results, per stage."""
    input:
        unpack(api_usage_input),
    output:
        report("results/{character}/api_usage.json", category="Generation"),
    log:
        "logs/{character}/api_usage.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/api_usage.py"


onsuccess:
    for line in summary_lines([f"results/{c}/generation_report.json" for c in CHARACTERS]):
        print(line)
    for line in selection_summary_lines([f"results/{c}/selection_summary.json" for c in CHARACTERS]):
        print(line)


onerror:
    # A run that stopped (every shot failed, an account-level refusal …) says which shots failed and why too.
    for line in summary_lines([f"results/{c}/generation_report.json" for c in CHARACTERS]):
        print(line)
