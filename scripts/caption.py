from synthlora.model_server import run_job, vlm_spec
from synthlora.scripting import job

with job(snakemake):
    s = snakemake.params.settings
    run_job("caption", vlm_spec(s, snakemake.config["caption"]["device"]),
            {"settings": s, "image": snakemake.input.image, "caption": snakemake.output.caption,
             "usage": snakemake.output.usage},
            snakemake.config, what=snakemake.input.image)
