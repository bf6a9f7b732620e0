from synthlora.pictures import eval_contact_sheet
from synthlora.scripting import job

with job(snakemake):
    eval_contact_sheet(snakemake.input.outputs, snakemake.input.images, snakemake.output[0],
                       title=f"{snakemake.wildcards.character}: checkpoint {snakemake.wildcards.run}")
