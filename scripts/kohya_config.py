from synthlora.io import write_text
from synthlora.kohya import (dataset_toml, sample_prompt_lines, train_toml, validate_dataset, validate_train,
                             write_toml)
from synthlora.scripting import job

with job(snakemake):
    p = snakemake.params
    family = p.train["family"]
    tr = train_toml(p.train, snakemake.wildcards.character, p.output_dir, snakemake.output.sample_prompts)
    flat = validate_train(tr, family=family)
    ds = validate_dataset(dataset_toml(p.train, p.dataset_dir, p.trigger), flat_train=flat)
    write_toml(snakemake.output.dataset_toml, ds)
    write_toml(snakemake.output.train_toml, tr)
    write_text(snakemake.output.sample_prompts, sample_prompt_lines(p.train))
