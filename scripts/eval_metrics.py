from synthlora.evaluate import measure_images
from synthlora.io import read_json, write_json
from synthlora.scripting import job

with job(snakemake):
    outputs = read_json(snakemake.input.outputs)
    cfg = snakemake.params.settings
    per_image = measure_images(outputs["images"], snakemake.input.images, snakemake.input.dataset,
                               snakemake.input.reference, cfg, device=snakemake.config["evaluate"]["device"])
    write_json(snakemake.output[0], {"run": outputs["run"], "embedder": cfg["embedder"],
                                     "dataset_images": len(snakemake.input.dataset), "images": per_image})
