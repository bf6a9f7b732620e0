from synthlora.io import write_text
from synthlora.model_card import model_card, provenance_table
from synthlora.report_pages import tsv_page
from synthlora.scripting import job
from synthlora.selection import selected_keys

with job(snakemake):
    out = snakemake.output
    base = f"results/{snakemake.wildcards.character}"
    provenance = [f"{base}/images/{k}.json" for k in selected_keys(snakemake.input.selection)]
    table = provenance_table(provenance, snakemake.params.character["reference"])
    write_text(out.provenance, table)
    write_text(out.provenance_page, tsv_page(table, f"{snakemake.wildcards.character}: provenance of the training images"))
    markdown, page = model_card(snakemake.input, provenance, snakemake.params.character, snakemake.params.config,
                                snakemake.params.demo_models_dir)
    write_text(out.card, markdown)
    write_text(out.card_page, page)
