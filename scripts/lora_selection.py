from synthlora.io import write_text
from synthlora.scripting import job

with job(snakemake):
    tables = [open(p, encoding="utf-8").read().splitlines() for p in snakemake.input]
    # one header (every member's table has the same columns), then every member's rows
    write_text(snakemake.output[0], "\n".join([tables[0][0], *(row for t in tables for row in t[1:])]) + "\n")
