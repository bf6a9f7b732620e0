from pathlib import Path

from synthlora.io import write_json, write_text
from synthlora.kohya import fingerprint, in_training_folder, validate_dataset, validate_train, write_toml
from synthlora.scripting import job

with job(snakemake):
    p, out = snakemake.params, snakemake.output
    folder = Path(out.train_toml).parent
    if fingerprint(p.inputs) != snakemake.wildcards.fingerprint:
        raise RuntimeError(f"{folder} was asked for, but the current training inputs have the fingerprint "
                           f"{fingerprint(p.inputs)}; run plain `snakemake` to build the current one")
    # The TOMLs the fingerprint was made of, pointing into this folder instead of its stand-in.
    tr = in_training_folder(p.inputs["train"], str(folder))
    flat = validate_train(tr, family=p.inputs["family"])
    ds = validate_dataset(p.inputs["dataset"], flat_train=flat)
    write_toml(out.dataset_toml, ds)
    write_toml(out.train_toml, tr)
    write_text(out.sample_prompts, p.sample_prompts)
    write_json(out.fingerprint, p.inputs)
