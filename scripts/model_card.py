from synthlora.io import write_text
from synthlora.model_card import model_card, provenance_table
from synthlora.report_pages import write_tsv_page
from synthlora.scripting import job
from synthlora.selection import selected_keys

with job(snakemake):
    out = snakemake.output
    base = f"results/{snakemake.wildcards.character}"
    provenance = [f"{base}/images/{k}.json" for k in selected_keys(snakemake.input.selection)]
    write_text(out.provenance, provenance_table(provenance, snakemake.params.character["reference"]))
    write_tsv_page(out.provenance, out.provenance_page, f"{snakemake.wildcards.character}: provenance of the training images")
    markdown, page = model_card(snakemake.input, provenance, snakemake.params.character, snakemake.params.config,
                                snakemake.params.demo_models_dir)
    write_text(out.card, markdown)
    write_text(out.card_page, page)
