from synthlora.io import read_json, write_json
from synthlora.scripting import job

with job(snakemake):
    members = snakemake.params.members
    write_json(snakemake.output[0], {"members": {m: read_json(p) for m, p in zip(members, snakemake.input)}})
    print(f"group of {', '.join(members)}")
