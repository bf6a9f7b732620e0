from synthlora.captions import tag_frequency
from synthlora.dataset import build_dataset, manifest
from synthlora.io import read_json, write_json
from synthlora.pictures import dataset_sheet
from synthlora.scripting import job
from synthlora.selection import read_tsv

with job(snakemake):
    items = list(zip(snakemake.input.images, snakemake.input.captions))
    build_dataset(snakemake.output.dataset, snakemake.params.subset, items)
    write_json(snakemake.output.tag_frequency, tag_frequency(snakemake.input.captions))
    write_json(snakemake.output.manifest, manifest([read_json(p) for p in snakemake.input.provenance],
                                                   [read_json(p) for p in snakemake.input.scores],
                                                   read_tsv(snakemake.input.selection)))
    dataset_sheet(snakemake.input.images, snakemake.input.captions, snakemake.output.sheet,
                  title=f"{snakemake.wildcards.character}: {len(items)} training images and their captions")
    print(f"{len(items)} images in {snakemake.output.dataset}/{snakemake.params.subset}")
