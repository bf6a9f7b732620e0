"""Shared setup: config validation, input checks, and the input/params functions of the rules."""

import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from synthlora.config import ConfigError, check_characters, config_problem
from synthlora.evaluate import BASE as BASE_RUN, render_settings, run_name, suite_items
from synthlora.generation import (cancel_on_interrupt, check_api_keys, generate_shot_in_thread, summary_lines,
                                  uses_api)
from synthlora.io import content_hash, file_sha256, read_json
from synthlora.kohya import (KohyaConfigError, checkpoint_name, fingerprint, saved_epochs, training_inputs,
                             validate_config)
from synthlora.plan import pixel_inputs, shot_by_key
from synthlora.selection import selected_keys

if workflow.is_main_process:
    logger.info("synthlora: config files read: " + " + ".join(os.path.relpath(f) for f in workflow.configfiles))
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
DEMO_MODELS = ("sdxl", "sd15", "vlm", "embedder")

# API jobs each hold one 'api_calls'; the workflow offers max_concurrent_api_calls of them unless
# the command line set its own (--resources api_calls=N).
if "api_calls" not in workflow.global_resources:
    workflow.register_resource("api_calls", config["max_concurrent_api_calls"])


# Backends that run no model where the job runs: they copy a file, read a folder or call a service.
NO_LOCAL_MODEL = {"manual", "folder", "openai"}


def gpus(stage, device_key="device"):
    """GPUs one job of a stage needs: 1 when it runs a local model not pinned to the CPU or to Apple's
    mps, else 0. On SLURM this becomes the job's --gpus; on a workstation it limits only runs given
    --resources gpu=N (then GPU jobs run N at a time instead of all at once)."""
    section = config[stage]
    if section.get("backend") in NO_LOCAL_MODEL:
        return 0
    return 0 if str(section.get(device_key, "auto")).split(":")[0] in ("cpu", "mps") else 1


def model_mem_mb(stage, mb):
    """Host memory of one job of a stage: mb when it loads a local model, 1 GB when it only copies a
    file, reads a folder or calls a service (so API jobs are not capped by memory they never use)."""
    return 1000 if config[stage].get("backend") in NO_LOCAL_MODEL else mb


def api_calls(stage):
    """One 'api_calls' slot for a job of a stage whose backend calls an API, none otherwise."""
    return 1 if uses_api(config, stage) else 0


wildcard_constraints:
    character="|".join(re.escape(c) for c in CHARACTERS),
    key="[0-9a-f]{16}",
    fingerprint="[0-9a-f]{32}",
    run="base|[0-9]{6}",


def character(wildcards):
    return config["characters"][wildcards.character]


def model_input(path):
    """A demo model is built by a rule, so it is an input; ancient() because a shot's key already
    names its model, and rebuilding the demo models must not regenerate every image."""
    if path.rstrip("/") in {os.path.join(DEMO, name) for name in DEMO_MODELS}:
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


# Every function that reads a checkpoint's output also returns that output as an input: Snakemake
# re-evaluates only the jobs that name a checkpoint's output as input once it reruns (an existing
# checkpoint output is trusted at start-up), so this is what keeps key lists and fingerprints
# current within one invocation.


def final_targets(wildcards):
    """Each character's LoRA, and every planned image: an image deleted by hand is made again
    (Snakemake would otherwise skip a missing intermediate whose dependants are current)."""
    targets = []
    for c in CHARACTERS:
        plan_file = checkpoints.plan.get(character=c).output[0]
        targets.append(plan_file)
        targets += [f"results/{c}/images/{shot['key']}.png" for shot in cached_json(plan_file)["shots"]]
        # The current training fingerprint is a target too, so a changed one is built even
        # though the LoRA files exist, and train (its non-ancient dependant) reruns.
        selection = checkpoints.select.get(character=c).output[0]
        targets += [selection, f"results/{c}/kohya/fingerprint/{fingerprint(training_inputs_for(c))}.json"]
        targets.append(f"results/{c}/lora/{c}.safetensors")
        targets += evaluation_targets(c)
        targets += [f"results/{c}/generation_report.json", f"results/{c}/api_usage.json"]
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


def source_folder(wildcards):
    """generate.backend 'folder': where this character's own images are."""
    if config["generate"]["backend"] != "folder":
        return ""
    return config["generate"]["folder"].replace("{character}", wildcards.character)


def folder_images(wildcards):
    """The folder's images are inputs of the plan: adding, removing or replacing one re-plans."""
    from synthlora.backends.folder import FolderError, folder_files

    if config["generate"]["backend"] != "folder":
        return []
    try:
        return [str(p) for p in folder_files(source_folder(wildcards))]
    except FolderError as e:
        raise WorkflowError(str(e))


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


def api_usage_input(wildcards):
    base = f"results/{wildcards.character}"
    return {"analysis": f"{base}/analysis_usage.json",
            "plan": f"{base}/plan.json", "selection": f"{base}/selection.tsv",
            "provenance": [f"{base}/images/{k}.json" for k in planned_keys(wildcards)],
            "captions": [f"{base}/captions/{k}.usage.json" for k in selected_of(wildcards)]}


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


def expected_size(wildcards):
    """Generated images must have the planned size; your own images may have any (kohya buckets them)."""
    if config["generate"]["backend"] == "folder":
        return None
    return [config["plan"]["width"], config["plan"]["height"]]



def select_input(wildcards):
    keys = planned_keys(wildcards)
    base = f"results/{wildcards.character}"
    return {
        "plan": f"{base}/plan.json",
        "images": [f"{base}/images/{k}.png" for k in keys],
        "scores": [f"{base}/scores/{k}.json" for k in keys],
        "provenance": [f"{base}/images/{k}.json" for k in keys],
        "embeddings": [f"{base}/scores/{k}.embedding.json" for k in keys],
        # The reference only feeds the near-copy guard; it never reaches the dataset.
        "reference": character(wildcards)["reference"],
        "reference_embedding": f"{base}/reference.embedding.json",
        **({"overrides": ch_overrides} if (ch_overrides := character(wildcards).get("overrides")) else {}),
        **({"answers": [f"{base}/scores/{k}.answers.json" for k in keys]} if config["select"]["vlm_questions"] else {}),
    }


# ---- caption / dataset -------------------------------------------------------------------------


def caption_vocabulary():
    return {cat: sorted(config["plan"][cat]) for cat in config["caption"]["categories"]}


def caption_settings(wildcards):
    """Everything a caption's text depends on besides its image."""
    return caption_settings_for(wildcards.character)


def caption_settings_for(name):
    return {
        "trigger": config["characters"][name]["trigger"],
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
        "provenance": [f"{base}/images/{k}.json" for k in keys],
        "scores": [f"{base}/scores/{k}.json" for k in keys],
    }


# ---- kohya config / train ----------------------------------------------------------------------


def dataset_dir(wildcards):
    return f"results/{wildcards.character}/dataset"


def lora_dir(wildcards):
    """Where the trainer writes per-epoch LoRAs (sd-scripts' output_dir)."""
    return f"results/{wildcards.character}/lora/epochs"


try:  # every training value, type and combination is checked before any job runs
    validate_config(config["train"])
except KohyaConfigError as e:
    raise WorkflowError(str(e))

SAVED_EPOCHS = saved_epochs(config["train"])


def sample_prompts_file(wildcards):
    return f"results/{wildcards.character}/kohya/sample_prompts.txt"


def epoch_loras(character):
    return [f"results/{character}/lora/epochs/{checkpoint_name(character, e)}" for e in SAVED_EPOCHS]


def delivered_epoch_lora(wildcards):
    """The evaluation's choice (eval/best.json, rule in synthlora.evaluate.pick_best) and every saved
    epoch it may name; deliver_lora links the chosen one. ancient(): the LoRAs' content is already
    named by best.json, so a retrained epoch reaches delivery through a new best.json."""
    c = wildcards.character
    return {"best": f"results/{c}/eval/best.json", "loras": [ancient(p) for p in epoch_loras(c)]}


def training_inputs_for(name):
    """What the LoRA depends on (needs the selection: call only where the selection is an input)."""
    return training_inputs(
        config["train"], name, f"results/{name}/lora/epochs", f"results/{name}/dataset",
        config["characters"][name]["trigger"],
        selected_keys(checkpoints.select.get(character=name).output[0]), caption_settings_for(name),
        f"results/{name}/kohya/sample_prompts.txt",
    )


def training_inputs_of(wildcards):
    return training_inputs_for(wildcards.character)


def train_fingerprint(wildcards):
    return fingerprint(training_inputs_of(wildcards))


def fingerprint_file(wildcards):
    return f"results/{wildcards.character}/kohya/fingerprint/{train_fingerprint(wildcards)}.json"


def kohya_config_input(wildcards):
    """kohya_config reruns (cheaply) whenever the dataset does, and takes the fingerprint marker
    as input: a needrun job is what makes Snakemake build a missing file it needs, so every
    change of the fingerprint (selection, captions, training values) reaches train this way."""
    base = f"results/{wildcards.character}"
    return {
        "selection": ancient(f"{base}/selection.tsv"),
        "tag_frequency": f"{base}/tag_frequency.json",
        "fingerprint": fingerprint_file(wildcards),
    }


def train_input(wildcards):
    """The dataset, TOMLs and selection are ancient(): a byte-identical rebuild of them in the same
    run must not retrain. What does retrain is a new fingerprint. It is a file, not only a param,
    because Snakemake skips the params check of a job below a needrun job and then does not
    follow ancient() edges; a missing file it always follows."""
    base = f"results/{wildcards.character}"
    return {
        "selection": ancient(f"{base}/selection.tsv"),
        "fingerprint": fingerprint_file(wildcards),
        "dataset": ancient(f"{base}/dataset"),
        "tag_frequency": ancient(f"{base}/tag_frequency.json"),
        "dataset_toml": ancient(f"{base}/kohya/dataset.toml"),
        "train_toml": ancient(f"{base}/kohya/train.toml"),
        "sample_prompts": ancient(f"{base}/kohya/sample_prompts.txt"),
        "model": model_input(config["train"]["base_model"]),
    }


# ---- evaluate --------------------------------------------------------------------------------

REPORT_PICTURES = ("tag_frequency", "selection_sheet", "loss_curve", "metrics_vs_epoch")
EVAL_RUNS = [BASE_RUN] + [run_name(e) for e in SAVED_EPOCHS]


def eval_model():
    return config["evaluate"]["model"] or config["train"]["base_model"]


def eval_items(wildcards):
    return suite_items(config["evaluate"], character(wildcards)["trigger"])


def eval_render_settings(wildcards):
    return render_settings(config["evaluate"], config["train"]["base_model"])


def eval_checkpoint(wildcards):
    """The checkpoint a run renders with (none for base). Its LoRA file is an input: it changes only
    when train reruns, which only a changed training fingerprint makes it do."""
    if wildcards.run == BASE_RUN:
        return None
    return {"epoch": int(wildcards.run)}


def evaluate_input(wildcards):
    inputs = {"model": model_input(eval_model())}
    if wildcards.run != BASE_RUN:
        inputs["lora"] = f"results/{wildcards.character}/lora/epochs/{checkpoint_name(wildcards.character, int(wildcards.run))}"
    return inputs


def eval_metrics_input(wildcards):
    """The dataset folder holds the selected images. It is ancient(): train_summary.json stands for
    its content, being rewritten exactly when the training fingerprint (selection, captions, TOMLs)
    changed, so a byte-identical rebuild of the dataset measures nothing again. (No checkpoint call
    here: it left the job's input undetermined when the selection did not run in the same invocation.)"""
    base = f"results/{wildcards.character}"
    return {
        "rendered": f"{base}/eval/{wildcards.run}/outputs.json",
        "rendered_dir": f"{base}/eval/{wildcards.run}/images",
        "reference": character(wildcards)["reference"],
        "dataset": ancient(f"{base}/dataset"),
        "train_summary": f"{base}/lora/train_summary.json",
        "embedder": model_input(config["evaluate"]["embedder"]),
    }


def eval_metrics_settings(wildcards):
    cfg = config["evaluate"]
    sel = config["select"]
    # The selection stage's detectors run on the outputs with the selection stage's thresholds.
    return {"embedder": cfg["embedder"], "dtype": cfg["dtype"], "min_std_luma": cfg["min_std_luma"],
            "trigger": character(wildcards)["trigger"], "max_text_chars": sel["max_text_chars"],
            "max_figures": sel["max_figures"], "ocr": config["score"]["ocr"],
            "ocr_min_confidence": config["score"]["ocr_min_confidence"],
            "background_suites": cfg["background_suites"], "plain_border_fraction": cfg["plain_border_fraction"],
            "stuck_background_distance": cfg["stuck_background_distance"]}


def eval_sheet_input(wildcards):
    base = f"results/{wildcards.character}/eval"
    runs = [BASE_RUN] if wildcards.run == BASE_RUN else [BASE_RUN, wildcards.run]
    return {"rendered": [f"{base}/{r}/outputs.json" for r in runs],
            "rendered_dirs": [f"{base}/{r}/images" for r in runs]}


def evaluation_targets(c):
    return [f"results/{c}/MODEL_CARD.md",
            *[f"results/{c}/eval/{r}/contact_sheet.png" for r in EVAL_RUNS],
            *[f"results/{c}/report/{name}.png" for name in REPORT_PICTURES]]
