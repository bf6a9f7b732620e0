checkpoint plan:
    """Turn the features into N deterministic shots, each with a prompt and a content key."""
    input:
        features="results/{character}/features.json",
        schema=features_schema,
        folder=folder_images,
    output:
        "results/{character}/plan.json",
    log:
        "logs/{character}/plan.log",
    params:
        plan=config["plan"],
        consistency=consistency_text,
        generate=plan_generate_inputs,
        folder=source_folder,
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/plan.py"
