from synthlora.reference import write_reference
from synthlora.scripting import job

with job(snakemake):
    notes = write_reference(snakemake.input[0], snakemake.output[0], snakemake.params.background)
    print(f"{snakemake.input[0]} -> {snakemake.output[0]}: " + ("; ".join(notes) or "8-bit RGB already, unchanged"))
