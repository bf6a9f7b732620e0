from synthlora.generation import is_failed
from synthlora.io import read_json, write_text
from synthlora.scripting import job
from synthlora.selection import select, to_tsv

with job(snakemake):
    provenance = [read_json(p) for p in snakemake.input.provenance]
    candidates = [{"key": prov["shot"]["key"], "tags": prov["shot"]["tags"], "score": read_json(s),
                   "failed": prov.get("reason", "generation failed") if is_failed(prov) else None}
                  for prov, s in zip(provenance, snakemake.input.scores)]
    cfg = snakemake.params.select
    rows = select(candidates, cfg["count"], cfg["max_duplicate_distance"], cfg["blur_drop_fraction"],
                  tuple(snakemake.params.size))
    print(f"selected {sum(r['selected'] for r in rows)} of {len(rows)}")
    write_text(snakemake.output[0], to_tsv(rows))
