from synthlora.groups import lora_card
from synthlora.io import write_text
from synthlora.scripting import job

with job(snakemake):
    write_text(snakemake.output[0], lora_card(snakemake.wildcards.character, snakemake.input, snakemake.params.members,
                                              snakemake.params.backend))
