import os

from synthlora.dataset import link_or_copy
from synthlora.evaluate import delivered_path
from synthlora.io import atomic_path
from synthlora.scripting import job

with job(snakemake):
    chosen = delivered_path(snakemake.input.best, snakemake.input.loras)
    with atomic_path(snakemake.output[0]) as tmp:
        os.unlink(tmp)
        link_or_copy(chosen, tmp)
    print(f"{snakemake.output[0]} <- {chosen}")
