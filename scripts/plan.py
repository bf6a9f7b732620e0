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
    elif snakemake.wildcards.character in (snakemake.config.get("groups") or {}):
        from synthlora.groups import make_group_plan

        # a group: every member's features, each read through its own schema's mapping
        names = snakemake.config["groups"][snakemake.wildcards.character]
        features = read_json(snakemake.input.features)["members"]
        members = [(m, features[m], prompt_mapping(load_schema(s), s)) for m, s in zip(names, snakemake.input.schema)]
        plan = make_group_plan(members, snakemake.params.plan, snakemake.params.generate, snakemake.params.consistency)
        print(f"{len(plan['shots'])} shots of {', '.join(names)} together")
    else:
        schema = load_schema(snakemake.input.schema)
        mapping = prompt_mapping(schema, snakemake.input.schema)
        features = read_json(snakemake.input.features)
        plan = make_plan(features, snakemake.params.plan, snakemake.params.generate, mapping,
                         snakemake.params.consistency)
        for line in prompt_report(plan, features, mapping, schema, snakemake.params.generate):
            print(line)
    write_json(snakemake.output[0], plan)
