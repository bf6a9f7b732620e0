from synthlora.evaluate import render_suite
from synthlora.io import atomic_dir, write_json
from synthlora.scripting import job

with job(snakemake):
    lora = snakemake.input.get("lora")
    settings = snakemake.params.settings
    with atomic_dir(snakemake.output.images) as tmp:
        rendered = render_suite(snakemake.params.suite, settings, lora, tmp,
                                device=snakemake.config["evaluate"]["device"])
    write_json(snakemake.output.outputs, {
        "run": snakemake.wildcards.run, "lora": lora, "checkpoint": snakemake.params.checkpoint,
        "settings": settings, "images": rendered,
    })
