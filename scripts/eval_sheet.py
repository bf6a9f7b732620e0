from synthlora.pictures import eval_contact_sheet
from synthlora.scripting import job

with job(snakemake):
    eval_contact_sheet(snakemake.input.rendered, snakemake.input.rendered_dirs, snakemake.output[0],
                       title=f"{snakemake.wildcards.character}: checkpoint {snakemake.wildcards.run.split('/')[-1]}")
