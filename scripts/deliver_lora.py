import os

from synthlora.dataset import link_or_copy
from synthlora.io import atomic_path
from synthlora.scripting import job

with job(snakemake):
    with atomic_path(snakemake.output[0]) as tmp:
        os.unlink(tmp)
        link_or_copy(snakemake.input[0], tmp)
    print(f"{snakemake.output[0]} <- {snakemake.input[0]}")
