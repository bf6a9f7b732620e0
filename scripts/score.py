from synthlora.io import write_json
from synthlora.score import score_image
from synthlora.scripting import job

with job(snakemake):
    write_json(snakemake.output[0], score_image(snakemake.input.image))
