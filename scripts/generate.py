from synthlora.generation import generate_shot
from synthlora.intake import backdrop_colour
from synthlora.scripting import job
from synthlora.single_file import model_options

with job(snakemake):
    shot = snakemake.params.shot
    gen_cfg = {**snakemake.config["generate"],
               "model_options": model_options(snakemake.config, shot.get("model", ""))}
    generate_shot(shot, gen_cfg, snakemake.input.get("reference"),
                  snakemake.output.image, snakemake.output.provenance, background=backdrop_colour(shot, snakemake.config))
