"""Shared setup: config validation, input checks, and the input/params functions of the rules."""

import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from synthlora.config import ConfigError, check_characters, config_problem
from synthlora.evaluate import BASE as BASE_RUN, render_settings, run_name, suite_items
from synthlora.generation import (cancel_on_interrupt, check_api_keys, generate_shot_in_thread, summary_lines,
                                  uses_api)
from synthlora.groups import (characters_in, groups_of, is_group, is_lora, lora_dataset_toml, lora_suite_items,
                              loras_of, subject_entry, subject_trigger, subset_dir, trained_names)
from synthlora.intake import backdrop_colour
from synthlora.io import content_hash, file_sha256, read_json
from synthlora import layout
from synthlora.kohya import (KohyaConfigError, checkpoint_name, fingerprint, sample_prompt_lines, saved_epochs,
                             validate_config)
from synthlora.plan import pixel_inputs, shot_by_key
from synthlora.score import MEASURES_VERSION
from synthlora.selection import selected_keys, selection_summary_lines
from synthlora.single_file import is_single_file, prediction_pixels
from synthlora.verify import file_problem, set_aside

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
# Several characters (synthlora.groups): groups are planned, selected and captioned like characters
# (results/<group>/); a multi-concept LoRA trains and evaluates under results/<lora>/. Without groups:
# and loras:, both lists are empty and every character trains its own LoRA.
GROUPS = list(groups_of(config))
LORAS = list(loras_of(config))
TRAINED = trained_names(config)
DEMO = config["demo_models_dir"].rstrip("/")
DEMO_MODELS = ("sdxl", "sd15", "vlm", "embedder", "sdxl.safetensors", "sd15.safetensors", "sdxl-components", "sd15-components")

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
    character="|".join(re.escape(c) for c in [*CHARACTERS, *GROUPS, *LORAS]),
    key="[0-9a-f]{16}",
    fingerprint="[0-9a-f]{32}",
    epoch="[0-9]{6}",
    # an evaluation run: 'base' (without a LoRA), or a saved epoch of one training
    run="base|[0-9a-f]{32}/[0-9]{6}",


def character(wildcards):
    """A character's entry; a group's or LoRA's is made from its members' (synthlora.groups)."""
    return subject_entry(config, wildcards.character)


def model_input(path):
    """A demo model is built by a rule, so it is an input; ancient() because a shot's key already
    names its model, and rebuilding the demo models must not regenerate every image."""
    demo = {os.path.join(DEMO, name) for name in DEMO_MODELS}
    paths = [path.rstrip(os.sep)]
    if is_single_file(path):  # a checkpoint file needs its components folder (configs, tokenizers) too
        paths += [config["single_file"][f"{family}_components"].rstrip(os.sep) for family in ("sdxl", "sd15")]
    return [ancient(p) for p in paths if p in demo]


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


# A function that reads a checkpoint's output (the plan, the selection) runs after it: while the
# checkpoint is to run, checkpoints.<rule>.get() raises and the asking job waits for it; Snakemake
# then evaluates the function again with the new output, in the same invocation.
#
# Snakemake 9.27 decides at start-up whether an existing checkpoint output can be trusted, and sees
# then only what the targets asked for so far; a function that raises asks for nothing but the
# checkpoint. So rule all asks in three steps, each listing all it can before the next checkpoint is
# consulted: analysis, then plan and images (a missing image makes select rerun before its old table
# is trusted), then what follows the selection. One function would hide a deleted image behind the
# selection checkpoint, whose old table would then be trusted for the run.


_reported_damage = set()


def damaged_to_rebuild(paths):
    """Set aside (as <name>.damaged) every one of these built files that does not parse: a truncated
    LoRA, image or TOML (synthlora.verify). Snakemake then sees it missing and builds it again. A dry
    run only says so; --report and other commands that run no job leave it alone."""
    for path in paths:
        problem = file_problem(path)
        if not problem or workflow.executor_plugin is None:
            continue
        if workflow.dryrun:
            if path not in _reported_damage:
                _reported_damage.add(path)
                logger.warning(f"{path} is damaged ({problem}): a run sets it aside as {path}{layout.DAMAGED_SUFFIX} "
                               "and builds it again")
        else:
            logger.warning(f"{path} is damaged ({problem}): set aside as {set_aside(path)}; it is built again")


def analysis_targets(wildcards):
    return [f"results/{c}/features.json" for c in CHARACTERS]


def planned_targets(wildcards):
    """Every planned image (one deleted by hand is made again), and the generation report."""
    targets = []
    for c in [*CHARACTERS, *GROUPS]:
        plan_file = checkpoints.plan.get(character=c).output[0]
        targets.append(plan_file)
        images = [f"results/{c}/images/{shot['key']}.png" for shot in cached_json(plan_file)["shots"]]
        damaged_to_rebuild(images)
        targets += images
        targets.append(f"results/{c}/generation_report.json")
    return targets


def trained_targets(wildcards):
    """The dataset, the current training's folder (train/<fingerprint>/: a changed fingerprint is a
    missing folder, and returning to an earlier one finds it done), its evaluation, the delivered LoRA
    and the model card: one plain `snakemake` brings all of it up to date."""
    targets = group_targets()
    for c in TRAINED:
        if is_lora(config, c):
            targets += lora_targets(c)
            continue
        checkpoints.plan.get(character=c)  # the plan first: see above
        selection = checkpoints.select.get(character=c).output[0]
        fp = fingerprint(training_inputs_for(c))
        # The dataset is a target of its own: train reads it through an ancient() edge, and when a job
        # reruns, Snakemake 9.27 looks at the jobs below it only along plain edges; without this, the
        # missing folder of a new training would go unnoticed in a run that also rebuilds the dataset.
        targets += [selection, f"results/{c}/dataset", f"results/{c}/dataset_manifest.json"]
        folder = training_folder(c, fp)
        damaged_to_rebuild([*epoch_loras(c, fp), f"{folder}/train.toml", f"{folder}/dataset.toml",
                            f"results/{c}/lora/{c}.safetensors"])
        # the TOMLs too: train reads them through ancient() edges (see the dataset above)
        targets += [*kohya_config_outputs(c, fp).values(), *training_outputs(c, fp), f"results/{c}/lora/{c}.safetensors"]
        targets += evaluation_targets(c, fp)
        targets.append(f"results/{c}/api_usage.json")
    return targets


# ---- analyze ---------------------------------------------------------------------------------


def analyze_input(wildcards):
    ch = character(wildcards)
    inputs = {
        "reference": f"results/{wildcards.character}/reference.png",  # as every model sees it
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


# ---- plan ------------------------------------------------------------------------------------


def features_schema(wildcards):
    """The plan reads the schema's "x-synthlora" block: which fields become prompt text (a group's
    plan: every member's)."""
    if is_group(config, wildcards.character):
        return [config["characters"][m]["features_schema"] for m in groups_of(config)[wildcards.character]]
    return character(wildcards)["features_schema"]


def consistency_text(wildcards):
    """The character's fixed consistency text, part of every prompt (and so of every shot key)."""
    return character(wildcards)["consistency"]


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
    pixels.update(prediction_pixels(config, config["generate"]["model"]))
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


def select_settings(wildcards):
    """The select config with its derived defaults filled in: the planned size, min_side (half
    the training resolution) and min_count (half of count)."""
    from synthlora.selection import min_count_of

    s = config["select"]
    if is_group(config, wildcards.character):  # as many figures as members (synthlora.groups.group_checks)
        s = {**s, "max_figures": len(groups_of(config)[wildcards.character])}
    return {**s, "expected_size": expected_size(wildcards), "min_count": min_count_of(s),
            "min_side": s["min_side"] if s["min_side"] is not None else int(config["train"]["resolution"]) // 2}


def observes_tags():
    """Whether rule observe tags every candidate before selection (select.observe_tags)."""
    mode = config["select"]["observe_tags"]
    return mode == "always" or (mode == "auto" and config["generate"]["backend"] == "folder")


def observe_settings(wildcards):
    """What the observed tags depend on besides the image: the caption model and the vocabulary."""
    return {"vocabulary": caption_vocabulary(), "instruction": config["caption"]["instruction"],
            **{k: v for k, v in config["caption"].items() if k in ("backend", "model", "dtype", "openai")}}


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
        "reference": f"{base}/reference.png",  # as every model sees it (rule reference)
        "reference_embedding": f"{base}/reference.embedding.json",
        **({"overrides": ch_overrides} if (ch_overrides := character(wildcards).get("overrides")) else {}),
        **({"answers": [f"{base}/scores/{k}.answers.json" for k in keys]} if asks_questions() else {}),
        **({"observed": [f"{base}/scores/{k}.tags.json" for k in keys]} if observes_tags() else {}),
        **({"members": member_embeddings(wildcards)} if is_group(config, wildcards.character) else {}),
    }


def ask_questions(wildcards):
    """What the caption model is asked about one candidate: select.vlm_questions, and with
    select.feature_checks one question per must-preserve feature its shot's framing shows
    (question → feature name; None for the vlm_questions)."""
    questions = {q: None for q in config["select"]["vlm_questions"]}
    if config["select"]["feature_checks"] and is_group(config, wildcards.character):
        questions.update(group_questions(wildcards))
    elif config["select"]["feature_checks"]:
        from synthlora.feature_text import feature_questions, prompt_mapping
        from synthlora.features import load_schema

        schema = character(wildcards)["features_schema"]
        features = cached_json(f"results/{wildcards.character}/features.json")
        framing = shot_of(wildcards).get("tags", {}).get("framings")
        questions.update(feature_questions(features, prompt_mapping(load_schema(schema), schema),
                                           config["plan"]["framings"].get(framing), config["plan"]["regions"]))
    return dict(sorted(questions.items()))


def asks_questions():
    return bool(config["select"]["vlm_questions"]) or config["select"]["feature_checks"]


# ---- caption / dataset -------------------------------------------------------------------------


def caption_vocabulary():
    return {cat: sorted(config["plan"][cat]) for cat in config["caption"]["categories"]}


def caption_settings(wildcards):
    """Everything a caption's text depends on besides its image."""
    return caption_settings_for(wildcards.character)


def caption_settings_for(name):
    return layout.caption_settings(config, name)


def dataset_input(wildcards):
    """The selected images and their captions. The selection table is ancient(): rewritten with the
    same selected keys (a new reference, more candidates) it must not rebuild the dataset, and other
    keys change this job's inputs anyway; it is an input so that the job waits for the checkpoint."""
    keys = selected_of(wildcards)
    base = f"results/{wildcards.character}"
    return {"selection": ancient(f"{base}/selection.tsv"),
            "images": [f"{base}/images/{k}.png" for k in keys],
            "captions": [f"{base}/captions/{k}.txt" for k in keys]}


def dataset_manifest_input(wildcards):
    keys = selected_of(wildcards)
    base = f"results/{wildcards.character}"
    return {"selection": f"{base}/selection.tsv",
            "provenance": [f"{base}/images/{k}.json" for k in keys],
            "scores": [f"{base}/scores/{k}.json" for k in keys]}


# ---- kohya config / train ----------------------------------------------------------------------


def dataset_dir(wildcards):
    return f"results/{wildcards.character}/dataset"


try:  # every training value, type and combination is checked before any job runs
    validate_config(config["train"])
except KohyaConfigError as e:
    raise WorkflowError(str(e))

SAVED_EPOCHS = saved_epochs(config["train"])


def training_folder(character, fp):
    """Where one training writes: its TOMLs, epochs, state, samples and summary (synthlora.layout)."""
    return layout.training_folder(character, fp)


def epoch_loras(character, fp):
    return [f"{training_folder(character, fp)}/epochs/{checkpoint_name(character, e)}" for e in SAVED_EPOCHS]


def training_outputs(character, fp):
    return [*epoch_loras(character, fp), f"{training_folder(character, fp)}/summary.json"]


def training_inputs_for(name):
    """What the LoRA depends on (reads the selection: call only after the select checkpoint); the
    same function names the current training for `synthlora clean`."""
    if is_lora(config, name):  # every member's selection
        selected = [k for m in loras_of(config)[name]["members"]
                    for k in selected_keys(checkpoints.select.get(character=m).output[0])]
        return layout.training_inputs_for(config, name, selected)
    return layout.training_inputs_for(config, name, selected_keys(checkpoints.select.get(character=name).output[0]))


def training_inputs_of(wildcards):
    return training_inputs_for(wildcards.character)


def current_fingerprint(wildcards):
    return fingerprint(training_inputs_for(wildcards.character))


def kohya_config_outputs(character, fp):
    folder = training_folder(character, fp)
    return {"dataset_toml": f"{folder}/dataset.toml", "train_toml": f"{folder}/train.toml",
            "sample_prompts": f"{folder}/sample_prompts.txt", "fingerprint": f"{folder}/fingerprint.json"}


def train_input(wildcards):
    """Every input is ancient(): its content is part of the fingerprint that names this job's outputs
    (the TOMLs and sample prompts of the same folder; the dataset's selected keys, captions' settings,
    repeats and trigger), so rewriting it with the same content in the same run is no reason to
    retrain. (The train script checks that the dataset holds exactly the fingerprint's images.)"""
    made = kohya_config_outputs(wildcards.character, wildcards.fingerprint)
    return {"dataset": ancient(dataset_dir(wildcards)), **{k: ancient(v) for k, v in made.items()},
            "model": model_input(config["train"]["base_model"])}


def delivered_epoch_lora(wildcards):
    """The evaluation's choice (best.json, rule in synthlora.evaluate.pick_best) among the current
    training's epochs; deliver_lora copies the chosen one."""
    c, fp = wildcards.character, current_fingerprint(wildcards)
    return {"best": f"results/{c}/eval/{fp}/best.json", "loras": epoch_loras(c, fp)}


# ---- evaluate --------------------------------------------------------------------------------

REPORT_PICTURES = ("tag_frequency", "selection_sheet", "loss_curve", "metrics_vs_epoch")


def eval_runs(fp):
    """The baseline and every saved epoch of training fp, as evaluation run names (eval/<run>/)."""
    return [BASE_RUN] + [f"{fp}/{run_name(e)}" for e in SAVED_EPOCHS]


def eval_model():
    return config["evaluate"]["model"] or config["train"]["base_model"]


def eval_items(wildcards):
    if is_lora(config, wildcards.character):  # each member's trigger(s): alone, and groups together
        return lora_suite_items(config, wildcards.character)
    return suite_items(config["evaluate"], character(wildcards)["trigger"])


def eval_render_settings(wildcards):
    settings = render_settings(config["evaluate"], config["train"]["base_model"])
    return {**settings, **prediction_pixels(config, settings["model"])}


def eval_checkpoint(wildcards):
    """The checkpoint a run renders with: none for base, else its training and epoch."""
    if wildcards.run == BASE_RUN:
        return None
    fp, epoch = wildcards.run.split("/")
    return {"fingerprint": fp, "epoch": int(epoch)}


def evaluate_input(wildcards):
    inputs = {"model": model_input(eval_model())}
    if wildcards.run != BASE_RUN:
        fp, epoch = wildcards.run.split("/")
        inputs["lora"] = f"{training_folder(wildcards.character, fp)}/epochs/{checkpoint_name(wildcards.character, int(epoch))}"
    return inputs


def eval_metrics_input(wildcards):
    """A run's test images, measured against the dataset and the reference. For an epoch the dataset
    is ancient(): the run's path names its training, whose fingerprint names the dataset's content.
    The baseline's metrics (one file for every training) follow the dataset as it is."""
    base = f"results/{wildcards.character}"
    dataset = dataset_dir(wildcards)
    return {
        "rendered": f"{base}/eval/{wildcards.run}/outputs.json",
        "rendered_dir": f"{base}/eval/{wildcards.run}/images",
        "reference": f"{base}/reference.png",  # as the analysis and the near-copy guard saw it
        "dataset": dataset if wildcards.run == BASE_RUN else ancient(dataset),
        "embedder": model_input(config["evaluate"]["embedder"]),
    }


def eval_metrics_settings(wildcards):
    cfg = config["evaluate"]
    sel = config["select"]
    # The selection stage's detectors run on the outputs with the selection stage's thresholds.
    return {"embedder": cfg["embedder"], "dtype": cfg["dtype"], "min_std_luma": cfg["min_std_luma"],
            "trigger": character(wildcards)["trigger"], "max_text_chars": sel["max_text_chars"],
            "max_figures": lora_max_figures(wildcards) or sel["max_figures"], "ocr": config["score"]["ocr"],
            "ocr_min_confidence": config["score"]["ocr_min_confidence"],
            "background_suites": cfg["background_suites"], "plain_border_fraction": cfg["plain_border_fraction"],
            "stuck_background_distance": cfg["stuck_background_distance"]}


def eval_sheet_input(wildcards):
    base = f"results/{wildcards.character}/eval"
    runs = [BASE_RUN] if wildcards.run == BASE_RUN else [BASE_RUN, wildcards.run]
    return {"rendered": [f"{base}/{r}/outputs.json" for r in runs],
            "rendered_dirs": [f"{base}/{r}/images" for r in runs]}


def eval_summary_input(wildcards):
    c, fp = wildcards.character, wildcards.fingerprint
    return {"metrics": [f"results/{c}/eval/{r}/metrics.json" for r in eval_runs(fp)],
            "train_summary": f"{training_folder(c, fp)}/summary.json"}


def report_pictures_input(wildcards):
    """What the charts show: the selection, the dataset's tags, the current training and its evaluation."""
    c, fp = wildcards.character, current_fingerprint(wildcards)
    return {"selection": f"results/{c}/selection.tsv", "tag_frequency": f"results/{c}/tag_frequency.json",
            "train_summary": f"{training_folder(c, fp)}/summary.json", "metrics": f"results/{c}/eval/{fp}/metrics.tsv"}


def model_card_input(wildcards):
    """What the model card reports: the charts' sources, the training's TOMLs, the evaluation's choice
    and every run's contact sheet (the delivered epoch's is embedded)."""
    c, fp = wildcards.character, current_fingerprint(wildcards)
    folder = training_folder(c, fp)
    return {**report_pictures_input(wildcards), "best": f"results/{c}/eval/{fp}/best.json",
            "train_toml": f"{folder}/train.toml", "dataset_toml": f"{folder}/dataset.toml",
            "contact_sheets": [f"results/{c}/eval/{r}/contact_sheet.png" for r in eval_runs(fp)]}


def evaluation_targets(c, fp):
    if is_lora(config, c):
        return lora_evaluation_targets(c, fp)
    return [f"results/{c}/MODEL_CARD.md", f"results/{c}/eval/{fp}/best.json",
            *[f"results/{c}/eval/{r}/contact_sheet.png" for r in eval_runs(fp)],
            *[f"results/{c}/report/{name}.png" for name in REPORT_PICTURES]]


# ---- several characters: groups and multi-concept LoRAs (synthlora.groups) ----------------------


def group_targets():
    """Every group's selection and dataset (trained only as part of a loras: entry)."""
    targets = []
    for g in GROUPS:
        checkpoints.plan.get(character=g)
        targets += [checkpoints.select.get(character=g).output[0], f"results/{g}/dataset",
                    f"results/{g}/dataset_manifest.json"]
    return targets


def lora_targets(lora):
    """A multi-concept LoRA: its members' datasets combined, its training, evaluation and card."""
    for m in loras_of(config)[lora]["members"]:
        checkpoints.plan.get(character=m)
        checkpoints.select.get(character=m)
    fp = fingerprint(training_inputs_for(lora))
    folder = training_folder(lora, fp)
    damaged_to_rebuild([*epoch_loras(lora, fp), f"{folder}/train.toml", f"{folder}/dataset.toml",
                        f"results/{lora}/lora/{lora}.safetensors"])
    return [f"results/{lora}/dataset", *kohya_config_outputs(lora, fp).values(), *training_outputs(lora, fp),
            f"results/{lora}/lora/{lora}.safetensors", *evaluation_targets(lora, fp)]


def lora_evaluation_targets(lora, fp):
    return [f"results/{lora}/MODEL_CARD.md", f"results/{lora}/eval/{fp}/best.json",
            *[f"results/{lora}/eval/{r}/contact_sheet.png" for r in eval_runs(fp)],
            *[f"results/{lora}/eval/{r}/triggers.json" for r in eval_runs(fp)]]


def lora_max_figures(wildcards):
    """A multi-concept LoRA's test prompts show up to its largest group: that many figures are no failure."""
    if not is_lora(config, wildcards.character):
        return None
    return max(len(characters_in(config, m)) for m in loras_of(config)[wildcards.character]["members"])


def group_questions(wildcards):
    """Each member's must-preserve questions about a group shot, asked about the figure at its place."""
    from synthlora.feature_text import prompt_mapping
    from synthlora.features import load_schema
    from synthlora.groups import group_feature_questions

    members = groups_of(config)[wildcards.character]
    mappings = {m: prompt_mapping(load_schema(s := config["characters"][m]["features_schema"]), s) for m in members}
    framing = shot_of(wildcards).get("tags", {}).get("framings")
    return group_feature_questions(cached_json(f"results/{wildcards.character}/features.json"), mappings,
                                   config["plan"]["framings"].get(framing), config["plan"]["regions"])


def member_embeddings(wildcards):
    """The embeddings of each member's selected images: where each member's identity is, for a
    group's selection (the select script groups them by member folder)."""
    return [f"results/{m}/scores/{k}.embedding.json" for m in groups_of(config)[wildcards.character]
            for k in selected_keys(checkpoints.select.get(character=m).output[0])]


def lora_dataset_input(wildcards):
    """A multi-concept LoRA's dataset: its members' dataset folders (each built from its selection)."""
    members = loras_of(config)[wildcards.character]["members"]
    for m in members:
        checkpoints.select.get(character=m)
    return {"datasets": [f"results/{m}/dataset" for m in members],
            "tag_frequencies": [f"results/{m}/tag_frequency.json" for m in members],
            "selections": [ancient(f"results/{m}/selection.tsv") for m in members]}


def lora_subsets(wildcards):
    """The subset folder of each member in a multi-concept LoRA's dataset, as its dataset.toml names them."""
    return [os.path.basename(sub["image_dir"]) for sub in lora_dataset_toml(config, wildcards.character)["datasets"][0]["subsets"]]


def member_references(wildcards):
    """A group's or LoRA's characters' references as every model sees them, side by side for its
    near-copy guard and evaluation."""
    return [f"results/{c}/reference.png" for c in characters_in(config, wildcards.character)]


def trigger_metrics_input(wildcards):
    """A LoRA run's renders and each of its characters' training images (their identity)."""
    lora = wildcards.character
    return {"rendered": f"results/{lora}/eval/{wildcards.run}/outputs.json",
            "rendered_dir": f"results/{lora}/eval/{wildcards.run}/images",
            "datasets": [f"results/{c}/dataset" for c in characters_in(config, lora)],
            "embedder": model_input(config["evaluate"]["embedder"])}


def lora_card_input(wildcards):
    lora, fp = wildcards.character, current_fingerprint(wildcards)
    folder = training_folder(lora, fp)
    return {"lora": f"results/{lora}/lora/{lora}.safetensors", "best": f"results/{lora}/eval/{fp}/best.json",
            "metrics": f"results/{lora}/eval/{fp}/metrics.tsv", "train_toml": f"{folder}/train.toml",
            "dataset_toml": f"{folder}/dataset.toml", "train_summary": f"{folder}/summary.json",
            "triggers": [f"results/{lora}/eval/{r}/triggers.json" for r in eval_runs(fp)]}
