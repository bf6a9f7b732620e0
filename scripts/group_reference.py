from synthlora.groups import side_by_side
from synthlora.scripting import job

with job(snakemake):
    side_by_side(list(snakemake.input), snakemake.output[0])
    print(f"{len(snakemake.input)} references side by side")
