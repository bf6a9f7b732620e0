from pathlib import Path

from synthlora.io import write_json
from synthlora.kohya import fingerprint
from synthlora.scripting import job

with job(snakemake):
    out = Path(snakemake.output[0])
    if fingerprint(snakemake.params.inputs) != snakemake.wildcards.fingerprint:
        raise RuntimeError(f"{out.name} was asked for, but the current training inputs hash differently; "
                           "run snakemake again")
    write_json(out, snakemake.params.inputs)
    # Only the current fingerprint stays: returning to an earlier one must retrain again.
    for old in out.parent.glob("*.json"):
        if old != out:
            old.unlink()
