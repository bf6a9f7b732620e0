from pathlib import Path

from synthlora.embed import Embedder, normalize
from synthlora.groups import trigger_table
from synthlora.io import read_json, write_json
from synthlora.scripting import job

with job(snakemake):
    p = snakemake.params
    items = read_json(snakemake.input.rendered)["images"]
    emb = Embedder(p.embedder, device=snakemake.config["evaluate"]["device"], dtype=p.dtype, key="evaluate.embedder")
    rendered = normalize(emb.images([Path(snakemake.input.rendered_dir) / it["file"] for it in items]))
    vectors = {it["name"]: v for it, v in zip(items, rendered)}
    centres = {}
    for char, dataset in zip(p.characters, snakemake.input.datasets):
        v = normalize(emb.images(sorted(Path(dataset).glob("*/*.png")))).mean(axis=0)
        centres[char] = normalize(v)
    rows = trigger_table(items, vectors, centres, p.members_of)
    for row in rows:
        print(row)
    write_json(snakemake.output[0], {"run": snakemake.wildcards.run, "embedder": p.embedder, "rows": rows})
