from synthlora.captions import tag_frequency
from synthlora.dataset import build_dataset
from synthlora.io import write_json
from synthlora.pictures import dataset_sheet
from synthlora.scripting import job

with job(snakemake):
    items = list(zip(snakemake.input.images, snakemake.input.captions))
    build_dataset(snakemake.output.dataset, snakemake.params.subset, items)
    write_json(snakemake.output.tag_frequency, tag_frequency(snakemake.input.captions))
    dataset_sheet(snakemake.input.images, snakemake.input.captions, snakemake.output.sheet,
                  title=f"{snakemake.wildcards.character}: {len(items)} training images and their captions")
    print(f"{len(items)} images in {snakemake.output.dataset}/{snakemake.params.subset}")
