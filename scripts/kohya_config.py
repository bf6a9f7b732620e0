from synthlora.kohya import dataset_toml, train_toml, validate_dataset, validate_train, write_toml
from synthlora.scripting import job

with job(snakemake):
    p = snakemake.params
    ds = validate_dataset(dataset_toml(p.train, p.dataset_dir, p.trigger))
    tr = train_toml(p.train, snakemake.wildcards.character, p.output_dir)
    validate_train(tr)
    write_toml(snakemake.output.dataset_toml, ds)
    write_toml(snakemake.output.train_toml, tr)
