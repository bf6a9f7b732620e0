import imagehash
from PIL import Image

from synthlora.generation import is_failed
from synthlora.io import read_json, write_text
from synthlora.report_pages import tsv_page
from synthlora.scripting import job
from synthlora.selection import contact_sheet, load_overrides, select, to_tsv

with job(snakemake):
    inp = snakemake.input
    provenance = [read_json(p) for p in inp.provenance]
    candidates = [{"key": prov["shot"]["key"], "tags": prov["shot"]["tags"], "source": prov.get("source", "generated"),
                   "score": read_json(s), "vector": read_json(e)["vector"],
                   "failed": prov.get("reason", "generation failed") if is_failed(prov) else None}
                  for prov, s, e in zip(provenance, inp.scores, inp.embeddings)]
    if "answers" in inp.keys():
        for c, path in zip(candidates, inp.answers):
            c["answers"] = read_json(path)
    with Image.open(inp.reference) as ref:
        reference = {"phash": str(imagehash.phash(ref.convert("RGB"))),
                     "vector": read_json(inp.reference_embedding)["vector"]}
    overrides = load_overrides(inp.get("overrides"), [c["key"] for c in candidates])
    cfg = snakemake.params.select
    size = snakemake.params.size
    rows = select(candidates, cfg, tuple(size) if size else None, reference, overrides)
    print(f"selected {sum(r['selected'] for r in rows)} of {len(rows)}")
    table = to_tsv(rows)
    write_text(snakemake.output.table, table)
    write_text(snakemake.output.page, tsv_page(table, f"{snakemake.wildcards.character}: selection of the candidates"))
    contact_sheet(rows, dict(zip([c["key"] for c in candidates], inp.images)), snakemake.output.sheet,
                  thumb=cfg["contact_sheet_thumb"])
