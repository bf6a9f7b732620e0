from synthlora.evaluate import summarize
from synthlora.io import read_json, write_json, write_text
from synthlora.report_pages import tsv_page
from synthlora.scripting import job

with job(snakemake):
    table, best = summarize([read_json(p) for p in snakemake.input.metrics], read_json(snakemake.input.train_summary),
                            snakemake.params.weights, snakemake.params.best_by)
    write_text(snakemake.output.table, table)
    write_text(snakemake.output.page, tsv_page(table, f"{snakemake.wildcards.character}: metrics per checkpoint"))
    write_json(snakemake.output.best, best)
    print(f"best epoch {best['epoch']} by {best['best_by']} = {best['value']}")
