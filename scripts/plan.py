from synthlora.feature_text import prompt_mapping
from synthlora.features import load_schema
from synthlora.io import read_json, write_json
from synthlora.plan import make_plan, prompt_report
from synthlora.scripting import job

with job(snakemake):
    if snakemake.params.generate["backend"] == "folder":
        from synthlora.backends.folder import folder_plan

        plan = folder_plan(snakemake.params.folder)
        print(f"{len(plan['shots'])} shots")
    else:
        schema = load_schema(snakemake.input.schema)
        mapping = prompt_mapping(schema, snakemake.input.schema)
        features = read_json(snakemake.input.features)
        plan = make_plan(features, snakemake.params.plan, snakemake.params.generate, mapping,
                         snakemake.params.consistency)
        for line in prompt_report(plan, features, mapping, schema, snakemake.params.generate):
            print(line)
    write_json(snakemake.output[0], plan)
