from pathlib import Path

from synthlora.io import write_json
from synthlora.scripting import job

with job(snakemake):
    cfg, p = snakemake.config["train"], snakemake.params
    state_dir = Path(snakemake.output.summary).parent / "state"
    if cfg["backend"] == "kohya":
        from synthlora.kohya_run import run_kohya

        summary = run_kohya(snakemake.input.train_toml, snakemake.input.dataset_toml, p.family, cfg["kohya"],
                            fingerprint=p.fingerprint, state_dir=state_dir)
    else:
        from synthlora.train import train_lora

        summary = train_lora(snakemake.input.train_toml, snakemake.input.dataset_toml, family=p.family,
                             device=cfg["device"], fingerprint=p.fingerprint, state_dir=state_dir,
                             latent_cache_dir=cfg["latent_cache_dir"], sample_prompts=snakemake.input.sample_prompts)
    missing = sorted(set(snakemake.output.loras) - {c["path"] for c in summary["checkpoints"]})
    if missing:
        raise RuntimeError(f"the trainer did not write {missing}")
    from synthlora.train import write_loss_curve

    write_loss_curve(summary["losses"], snakemake.output.loss_curve,
                     f"{snakemake.wildcards.character}: {summary['backend']} {summary['family']}")
    summary["fingerprint"] = p.fingerprint
    write_json(snakemake.output.summary, summary)
