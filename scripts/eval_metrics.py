from pathlib import Path

from synthlora.io import read_json, write_json
from synthlora.model_server import run_job
from synthlora.scripting import job

with job(snakemake):
    dataset = sorted(str(p) for p in Path(snakemake.input.dataset).glob("*/*.png"))
    outputs = read_json(snakemake.input.rendered)
    cfg = snakemake.params.settings
    # the embedder is loaded once (by its model server, the one selection's embed jobs use when it is the same model)
    per_image = run_job("eval_metrics", {"model": cfg["embedder"], "device": snakemake.config["evaluate"]["device"],
                                         "dtype": cfg["dtype"], "key": "evaluate.embedder"},
                        {"images": outputs["images"], "image_dir": snakemake.input.rendered_dir, "dataset": dataset,
                         "reference": snakemake.input.reference, "settings": cfg},
                        snakemake.config, what=f"measuring {snakemake.input.rendered_dir}")
    write_json(snakemake.output[0], {"run": outputs["run"], "embedder": cfg["embedder"],
                                     "dataset_images": len(dataset), "images": per_image})
