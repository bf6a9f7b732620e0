from synthlora.demo_models import BUILDERS, SINGLE_FILES, write_single_file
from synthlora.io import atomic_dir
from synthlora.scripting import job

with job(snakemake):
    for name, builder in BUILDERS.items():
        with atomic_dir(snakemake.output[name]) as tmp:
            builder(tmp, seed=0)
    for family in SINGLE_FILES:
        write_single_file(snakemake.output[family], snakemake.output[f"{family}_file"],
                          snakemake.output[f"{family}_components"], family)
