from synthlora.io import read_json, write_json
from synthlora.plan import make_plan
from synthlora.scripting import job

with job(snakemake):
    if snakemake.params.generate["backend"] == "folder":
        from synthlora.backends.folder import folder_plan

        plan = folder_plan(snakemake.params.folder)
    else:
        plan = make_plan(read_json(snakemake.input.features), snakemake.params.plan, snakemake.params.generate)
    print(f"{len(plan['shots'])} shots")
    write_json(snakemake.output[0], plan)
