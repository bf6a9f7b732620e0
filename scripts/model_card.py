from synthlora.io import write_text
from synthlora.model_card import model_card, provenance_table
from synthlora.scripting import job
from synthlora.selection import selected_keys

with job(snakemake):
    base = f"results/{snakemake.wildcards.character}"
    provenance = [f"{base}/images/{k}.json" for k in selected_keys(snakemake.input.selection)]
    rows = provenance_table(provenance, snakemake.params.character["reference"])
    write_text(snakemake.output.provenance, rows)
    write_text(snakemake.output.card, model_card(snakemake.input, provenance, snakemake.params.character,
                                                 snakemake.params.config, snakemake.params.demo_models_dir))
