"""synthlora: one character reference → a trained character LoRA, from synthetic images only.

Read top to bottom: config is validated (unknown keys, bad reference images and broken schemas
fail here, before any job), then each stage's rules are included in pipeline order.
"""

import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# The synthlora package beside this Snakefile serves the workflow and every job (also inside
# per-rule conda environments), whether or not it was pip-installed.
_src = os.path.join(workflow.basedir, "src")
if os.path.isdir(_src):
    sys.path.insert(0, _src)
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [_src, os.getenv("PYTHONPATH")])))


# Your --configfile(s) are the whole config, completed by the schema's defaults (which are meant for
# real runs). The demo config is read only when no config file is named: a real run never inherits
# the demo's tiny sizes or its thresholds for random-weight models.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


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
include: "rules/evaluate.smk"
include: "rules/groups.smk"


# Cheap aggregating rules run where snakemake runs (on a cluster: the login node), never as cluster
# jobs; so does analyze with the manual backend (its own `localrule:`).
localrules:
    all,
    build_demo_models,
    reference,
    plan,
    generation_report,
    api_usage,
    select,
    dataset,
    dataset_manifest,
    kohya_config,
    deliver_lora,
    eval_summary,
    eval_sheet,
    report_pictures,
    model_card,
    group_features,
    group_reference,
    lora_selection,
    lora_dataset,
    lora_model_card,


rule all:
    """Every character's trained LoRA, its evaluation and model card, and every planned image."""
    input:
        analysis_targets,  # in three steps, so that each checkpoint is consulted only after
        planned_targets,  # what could make it rerun was asked for (rules/common.smk)
        trained_targets,
    default_target: True
