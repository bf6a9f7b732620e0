from pathlib import Path

from synthlora.evaluate import measure_images
from synthlora.io import read_json, write_json
from synthlora.scripting import job

with job(snakemake):
    dataset = sorted(str(p) for p in Path(snakemake.input.dataset).glob("*/*.png"))
    outputs = read_json(snakemake.input.rendered)
    cfg = snakemake.params.settings
    per_image = measure_images(outputs["images"], snakemake.input.rendered_dir, dataset,
                               snakemake.input.reference, cfg, device=snakemake.config["evaluate"]["device"])
    write_json(snakemake.output[0], {"run": outputs["run"], "embedder": cfg["embedder"],
                                     "dataset_images": len(dataset), "images": per_image})
