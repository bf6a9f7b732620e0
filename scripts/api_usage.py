from synthlora.generation import api_usage
from synthlora.io import write_json
from synthlora.scripting import job

with job(snakemake):
    usage = api_usage(snakemake.input.analysis, snakemake.input.provenance, snakemake.input.captions)
    print(usage)
    write_json(snakemake.output[0], usage)
