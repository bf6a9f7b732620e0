from synthlora.io import atomic_dir, write_json
from synthlora.model_server import run_job
from synthlora.scripting import job
from synthlora.single_file import model_options
from synthlora.verify import safetensors_problem

with job(snakemake):
    lora = snakemake.input.get("lora")
    if lora and (problem := safetensors_problem(lora)):  # say which file, not a loader traceback
        raise ValueError(f"{lora}: {problem}. Run snakemake again: it is set aside and restored or trained again")
    settings = snakemake.params.settings
    with atomic_dir(snakemake.output.images) as tmp:
        # the pipeline is loaded once (by its model server) for every run's suites; the LoRA per run
        rendered = run_job("evaluate", {"model": settings["model"], "dtype": settings["dtype"],
                                        "device": snakemake.config["evaluate"]["device"],
                                        "model_options": model_options(snakemake.config, settings["model"])},
                           {"items": snakemake.params.suite, "settings": settings, "lora": lora, "out_dir": str(tmp)},
                           snakemake.config, what=f"evaluation run {snakemake.wildcards.run} ({snakemake.output.images})")
    write_json(snakemake.output.outputs, {
        # the run's name among its training's runs: base, or the epoch (000001)
        "run": snakemake.wildcards.run.split("/")[-1], "lora": lora, "checkpoint": snakemake.params.checkpoint,
        "settings": settings, "images": rendered,
    })
