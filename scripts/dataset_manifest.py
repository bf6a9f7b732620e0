from synthlora.dataset import manifest
from synthlora.io import read_json, write_json
from synthlora.scripting import job
from synthlora.selection import read_tsv

with job(snakemake):
    inp = snakemake.input
    write_json(snakemake.output[0], manifest([read_json(p) for p in inp.provenance],
                                             [read_json(p) for p in inp.scores], read_tsv(inp.selection)))
