"""synthlora: one character reference → a trained character LoRA, from synthetic images only.

Read top to bottom: config is validated (unknown keys, bad reference images and broken schemas
fail here, before any job), then each stage's rules are included in pipeline order.
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/demo_models.smk"
include: "rules/analyze.smk"
include: "rules/plan.smk"
include: "rules/generate.smk"
include: "rules/generation_report.smk"
include: "rules/score.smk"
include: "rules/select.smk"
include: "rules/caption.smk"
include: "rules/dataset.smk"
include: "rules/kohya_config.smk"
include: "rules/train.smk"


rule all:
    """Every character's trained LoRA and every planned image."""
    input:
        final_targets,
    default_target: True
