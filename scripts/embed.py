from synthlora.model_server import run_job
from synthlora.scripting import job

with job(snakemake):
    run_job("embed", {"model": snakemake.params.model, "device": snakemake.config["select"]["embedder_device"],
                      "dtype": "auto", "key": "select.embedder"},
            {"image": snakemake.input.image, "output": snakemake.output[0]}, snakemake.config,
            what=snakemake.input.image)
