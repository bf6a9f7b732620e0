from synthlora.evaluate import render_suite
from synthlora.io import atomic_dir, write_json
from synthlora.scripting import job
from synthlora.single_file import model_options
from synthlora.verify import safetensors_problem

with job(snakemake):
    lora = snakemake.input.get("lora")
    if lora and (problem := safetensors_problem(lora)):  # say which file, not a loader traceback
        raise ValueError(f"{lora}: {problem}. Run snakemake again: it is set aside and restored or trained again")
    settings = snakemake.params.settings
    with atomic_dir(snakemake.output.images) as tmp:
        rendered = render_suite(snakemake.params.suite, settings, lora, tmp,
                                device=snakemake.config["evaluate"]["device"],
                                model_options=model_options(snakemake.config, settings["model"]))
    write_json(snakemake.output.outputs, {
        # the run's name among its training's runs: base, or the epoch (000001)
        "run": snakemake.wildcards.run.split("/")[-1], "lora": lora, "checkpoint": snakemake.params.checkpoint,
        "settings": settings, "images": rendered,
    })
