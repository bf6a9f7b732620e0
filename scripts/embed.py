from synthlora.embed import Embedder, embed_file
from synthlora.io import write_json
from synthlora.scripting import job

with job(snakemake):
    embedder = Embedder(snakemake.params.model, device=snakemake.config["select"]["embedder_device"])
    write_json(snakemake.output[0], embed_file(embedder, snakemake.input.image))
