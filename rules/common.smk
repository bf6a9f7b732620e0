"""Shared setup: config validation, input checks, and the input/params functions of the rules."""

import os
import re

from snakemake.exceptions import WorkflowError

from synthlora.config import ConfigError, check_characters, config_problem
from synthlora.generation import check_api_keys, summary_lines, uses_api
from synthlora.io import content_hash, file_sha256, read_json
from synthlora.kohya import training_fingerprint
from synthlora.plan import pixel_inputs, shot_by_key
from synthlora.selection import selected_keys

_problem = config_problem(config, os.path.join(workflow.basedir, "config", "config.schema.yaml"))
if _problem:
    raise WorkflowError(_problem)
try:
    check_characters(config)
except ConfigError as e:
    raise WorkflowError(str(e))

try:
    check_api_keys(config)
except ConfigError as e:
    raise WorkflowError(str(e))

CHARACTERS = list(config["characters"])
DEMO = config["demo_models_dir"].rstrip("/")
DEMO_MODELS = ("sdxl", "vlm", "embedder")

# API jobs each hold one 'api_calls'; the workflow offers max_concurrent_api_calls of them unless
# the command line set its own (--resources api_calls=N).
if "api_calls" not in workflow.global_resources:
    workflow.register_resource("api_calls", config["max_concurrent_api_calls"])


def api_calls(stage):
    """One 'api_calls' slot for a job of a stage whose backend calls an API, none otherwise."""
    return 1 if uses_api(config, stage) else 0


wildcard_constraints:
    character="|".join(re.escape(c) for c in CHARACTERS),
    key="[0-9a-f]{16}",


def character(wildcards):
    return config["characters"][wildcards.character]


def model_input(path):
    """A demo model is built by a rule, so it is an input; ancient() because a shot's key already
    names its model, and rebuilding the demo models must not regenerate every image."""
    if path.rstrip("/") in {f"{DEMO}/{name}" for name in DEMO_MODELS}:
        return [ancient(path.rstrip("/"))]
    return []


_json_cache = {}


def cached_json(path):
    """Parse each version of a file once: params functions ask for it once per job."""
    stamp = os.stat(path).st_mtime_ns
    hit = _json_cache.get(path)
    if hit is None or hit[0] != stamp:
        hit = _json_cache[path] = (stamp, read_json(path))
    return hit[1]


def plan_of(wildcards):
    return cached_json(checkpoints.plan.get(character=wildcards.character).output[0])


def planned_keys(wildcards):
    return [shot["key"] for shot in plan_of(wildcards)["shots"]]


def selected_of(wildcards):
    return selected_keys(checkpoints.select.get(character=wildcards.character).output[0])


def final_targets(wildcards):
    """Each character's LoRA, and every planned image: an image deleted by hand is made again
    (Snakemake would otherwise skip a missing intermediate whose dependants are current)."""
    targets = []
    for c in CHARACTERS:
        plan = cached_json(checkpoints.plan.get(character=c).output[0])
        targets += [f"results/{c}/images/{shot['key']}.png" for shot in plan["shots"]]
        targets.append(f"results/{c}/lora/{c}.safetensors")
        targets.append(f"results/{c}/generation_report.json")
    return targets


# ---- analyze ---------------------------------------------------------------------------------


def analyze_input(wildcards):
    ch = character(wildcards)
    inputs = {
        "reference": ch["reference"],
        "description": ch["description"],
        "instruction": config["analyze"]["instruction"],
        "schema": ch["features_schema"],
    }
    if config["analyze"]["backend"] == "manual":
        inputs["manual"] = ch["features_manual"]
    else:
        inputs["model"] = model_input(config["analyze"]["model"])
    return inputs


def analyze_settings(wildcards):
    """What changes the analysis; the device does not."""
    return {k: v for k, v in config["analyze"].items() if k != "device"}


# ---- generate --------------------------------------------------------------------------------


def reference_mode():
    return config["generate"]["backend"] == "openai" and config["generate"]["openai"]["reference_mode"]


def generate_input(wildcards):
    plan_of(wildcards)  # the shot comes from the plan: wait for the checkpoint
    inputs = {"model": model_input(config["generate"]["model"])}
    if reference_mode():
        # ancient(): the reference's content is already in every shot key (plan_generate_inputs)
        inputs["reference"] = ancient(character(wildcards)["reference"])
    return inputs


def plan_generate_inputs(wildcards):
    """The generator settings that go into each shot key; in reference mode the reference image
    shapes the pixels, so its content hash does too."""
    pixels = pixel_inputs(config["generate"])
    if reference_mode():
        pixels["reference_sha256"] = file_sha256(character(wildcards)["reference"])
    return pixels


def generation_report_input(wildcards):
    keys = planned_keys(wildcards)
    return {"provenance": [f"results/{wildcards.character}/images/{k}.json" for k in keys]}


def shot_of(wildcards):
    """The shot behind images/{key}.png. A key that left the plan can still be asked about (a
    downstream input function may read a selection that is about to be redone); its provenance
    sidecar holds the very shot it was made from, so its params stay exactly as recorded."""
    plan = plan_of(wildcards)
    try:
        return shot_by_key(plan, wildcards.key)
    except KeyError:
        sidecar = f"results/{wildcards.character}/images/{wildcards.key}.json"
        if os.path.exists(sidecar):
            return cached_json(sidecar)["shot"]
        raise


# ---- select ----------------------------------------------------------------------------------


def select_input(wildcards):
    keys = planned_keys(wildcards)
    base = f"results/{wildcards.character}"
    return {
        "images": [f"{base}/images/{k}.png" for k in keys],
        "scores": [f"{base}/scores/{k}.json" for k in keys],
        "provenance": [f"{base}/images/{k}.json" for k in keys],
    }


# ---- caption / dataset -------------------------------------------------------------------------


def caption_vocabulary():
    return {cat: sorted(config["plan"][cat]) for cat in config["caption"]["categories"]}


def caption_settings(wildcards):
    """Everything a caption's text depends on besides its image."""
    return {
        "trigger": character(wildcards)["trigger"],
        "vocabulary": caption_vocabulary(),
        **{k: v for k, v in config["caption"].items() if k != "device"},
    }


def dataset_input(wildcards):
    keys = selected_of(wildcards)
    base = f"results/{wildcards.character}"
    return {
        "selection": f"{base}/selection.tsv",
        "images": [f"{base}/images/{k}.png" for k in keys],
        "captions": [f"{base}/captions/{k}.txt" for k in keys],
    }


# ---- kohya config / train ----------------------------------------------------------------------


def dataset_dir(wildcards):
    return f"results/{wildcards.character}/dataset"


def lora_dir(wildcards):
    return f"results/{wildcards.character}/lora"


def train_input(wildcards):
    """All ancient(): the LoRA's content is named by the fingerprint param, so a byte-identical
    rebuild of the dataset or TOMLs upstream in the same run does not retrain."""
    selected_of(wildcards)  # the fingerprint needs the selection: wait for the checkpoint
    base = f"results/{wildcards.character}"
    return {
        "dataset": ancient(f"{base}/dataset"),
        "tag_frequency": ancient(f"{base}/tag_frequency.json"),
        "dataset_toml": ancient(f"{base}/kohya/dataset.toml"),
        "train_toml": ancient(f"{base}/kohya/train.toml"),
        "model": model_input(config["train"]["base_model"]),
    }


def train_fingerprint(wildcards):
    return training_fingerprint(
        config["train"], wildcards.character, lora_dir(wildcards), dataset_dir(wildcards),
        character(wildcards)["trigger"], selected_of(wildcards), caption_settings(wildcards),
    )
