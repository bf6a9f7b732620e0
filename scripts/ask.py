from synthlora.io import write_json
from synthlora.model_server import run_job, vlm_spec
from synthlora.scripting import job

with job(snakemake):
    questions = dict(snakemake.params.questions)  # question → must-preserve feature (None: select.vlm_questions)
    if questions:
        run_job("ask", vlm_spec(snakemake.params.settings, snakemake.config["caption"]["device"]),
                {"questions": snakemake.params.questions, "image": snakemake.input.image,
                 "output": snakemake.output[0]}, snakemake.config, what=snakemake.input.image)
    else:  # nothing to ask: no model needed
        print({})
        write_json(snakemake.output[0], {"answers": {}, "must_preserve": {}})
