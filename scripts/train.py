from synthlora.io import write_json
from synthlora.scripting import job
from synthlora.train import train_lora

with job(snakemake):
    summary = train_lora(snakemake.input.train_toml, snakemake.input.dataset_toml, snakemake.output.lora,
                         family=snakemake.params.family, device=snakemake.config["train"]["device"])
    summary["fingerprint"] = snakemake.params.fingerprint
    write_json(snakemake.output.summary, summary)
