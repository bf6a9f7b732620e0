from synthlora.io import write_json
from synthlora.scripting import job
from synthlora.train import train_lora

with job(snakemake):
    summary = train_lora(snakemake.input.train_toml, snakemake.input.dataset_toml,
                         family=snakemake.params.family, device=snakemake.config["train"]["device"])
    missing = sorted(set(snakemake.output.loras) - {c["path"] for c in summary["checkpoints"]})
    if missing:
        raise RuntimeError(f"the trainer did not write {missing}")
    summary["fingerprint"] = snakemake.params.fingerprint
    write_json(snakemake.output.summary, summary)
