from synthlora.generation import generate_shot
from synthlora.intake import backdrop_colour
from synthlora.scripting import job

with job(snakemake):
    shot = snakemake.params.shot
    generate_shot(shot, snakemake.config["generate"], snakemake.input.get("reference"),
                  snakemake.output.image, snakemake.output.provenance, background=backdrop_colour(shot, snakemake.config))
