from synthlora.pictures import report_pictures
from synthlora.scripting import job

with job(snakemake):
    report_pictures(snakemake.input, snakemake.output, snakemake.wildcards.character, snakemake.params.trigger)
