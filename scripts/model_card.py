from synthlora.io import write_text
from synthlora.model_card import model_card, provenance_table
from synthlora.scripting import job

with job(snakemake):
    rows = provenance_table(snakemake.input.provenance, snakemake.params.character["reference"])
    write_text(snakemake.output.provenance, rows)
    write_text(snakemake.output.card, model_card(snakemake.input, snakemake.params.character,
                                                 snakemake.params.config, snakemake.params.demo_models_dir))
