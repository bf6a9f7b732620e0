import shutil

from synthlora.evaluate import delivered_path
from synthlora.io import atomic_path
from synthlora.scripting import job

with job(snakemake):
    chosen = delivered_path(snakemake.input.best, snakemake.input.loras)
    # A copy, not a link: Snakemake touches every output after a job, and a hard link shares its
    # mtime with the epoch file, whose evaluation would then look stale on every later run.
    with atomic_path(snakemake.output[0]) as tmp:
        shutil.copyfile(chosen, tmp)
    print(f"{snakemake.output[0]} <- {chosen}")
