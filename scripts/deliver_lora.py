import shutil

from synthlora.evaluate import delivered_path
from synthlora.io import atomic_path
from synthlora.scripting import job
from synthlora.verify import verified_lora

with job(snakemake):
    chosen = delivered_path(snakemake.input.best, snakemake.input.loras)
    found = verified_lora(chosen)  # every tensor's bytes, and the hash in its metadata: never deliver a damaged file
    # A copy, not a link: nothing done to one file (a truncation, an edit in place) reaches the other.
    with atomic_path(snakemake.output[0]) as tmp:
        shutil.copyfile(chosen, tmp)
        if verified_lora(tmp) != found:
            raise RuntimeError(f"the copy of {chosen} differs from it; check the disk and run snakemake again")
    print(f"{snakemake.output[0]} <- {chosen}: {found['tensors']} tensors ({found['modules']} modules), "
          f"SHA-256 of the tensors {found['sha256_of_tensors'][:16]}… = sshs_model_hash in its metadata")
