from synthlora.demo_models import BUILDERS
from synthlora.io import atomic_dir
from synthlora.scripting import job

with job(snakemake):
    for name, builder in BUILDERS.items():
        with atomic_dir(snakemake.output[name]) as tmp:
            builder(tmp, seed=0)
