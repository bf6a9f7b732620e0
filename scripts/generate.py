from synthlora.generation import generate_shot
from synthlora.scripting import job

with job(snakemake):
    generate_shot(snakemake.params.shot, snakemake.config["generate"], snakemake.input.get("reference"),
                  snakemake.output.image, snakemake.output.provenance)
