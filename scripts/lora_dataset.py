from collections import Counter

from synthlora.groups import build_lora_dataset
from synthlora.io import read_json, write_json
from synthlora.scripting import job

with job(snakemake):
    p = snakemake.params
    counts = build_lora_dataset(snakemake.output.dataset, list(snakemake.input.datasets), p.subsets)
    freq = Counter()
    for path in snakemake.input.tag_frequencies:
        freq.update(read_json(path))
    write_json(snakemake.output.tag_frequency, dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))))
    for member, subset, n in zip(p.members, p.subsets, counts):
        print(f"{member}: {n} images in {snakemake.output.dataset}/{subset}")
