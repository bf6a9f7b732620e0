from synthlora.generation import generation_report
from synthlora.io import write_json
from synthlora.scripting import job

with job(snakemake):
    report = generation_report(snakemake.input.provenance)
    print(f"{report['ok']} of {report['shots']} shots generated, {len(report['failed'])} failed")
    write_json(snakemake.output[0], report)
