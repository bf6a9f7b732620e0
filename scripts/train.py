from pathlib import Path

from synthlora.io import read_json, write_json
from synthlora.locks import training_lock
from synthlora.scripting import job
from synthlora.train import check_dataset, write_loss_curve

with job(snakemake):
    cfg, p, inp, out = snakemake.config["train"], snakemake.params, snakemake.input, snakemake.output
    folder = Path(out.summary).parent  # results/<character>/train/<fingerprint>/
    fingerprint = snakemake.wildcards.fingerprint
    check_dataset(inp.dataset, read_json(inp.fingerprint)["images"])
    # Another live run training this folder (possible after `snakemake --unlock`) fails this job at once, naming it.
    with training_lock(folder / "train.lock"):
        if cfg["backend"] == "kohya":
            from synthlora.kohya_run import run_kohya

            summary = run_kohya(inp.train_toml, inp.dataset_toml, p.family, cfg["kohya"],
                                fingerprint=fingerprint, state_dir=folder / "state")
        else:
            from synthlora.train import train_lora

            summary = train_lora(inp.train_toml, inp.dataset_toml, family=p.family, device=cfg["device"],
                                 fingerprint=fingerprint, state_dir=folder / "state",
                                 latent_cache_dir=cfg["latent_cache_dir"], sample_prompts=inp.sample_prompts,
                                 samples_dir=folder / "samples", single_file=snakemake.config["single_file"])
        missing = sorted(set(out.loras) - {c["path"] for c in summary["checkpoints"]})
        if missing:
            raise RuntimeError(f"the trainer did not write {missing}")
        write_loss_curve(summary["losses"], out.loss_curve,
                         f"{snakemake.wildcards.character}: {summary['backend']} {summary['family']}")
        summary["fingerprint"] = fingerprint
        write_json(out.summary, summary)
