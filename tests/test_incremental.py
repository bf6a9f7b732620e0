"""The incremental-rebuild contract, proven with real snakemake runs in temporary directories.

Generation costs money and training costs GPU hours: no generate or train job may run unless the
content it depends on changed, within one invocation too.
"""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from synthlora.features import validation_problem
from synthlora.selection import selected_keys
from conftest import TEST_CONFIG
from training_paths import training

pytestmark = pytest.mark.workflow


def snapshot(wf, pattern="results/mira/images/*.png"):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(wf.root.glob(pattern))}


def plan_shots(wf):
    return json.loads(wf.path("results/mira/plan.json").read_text())["shots"]


def test_full_run_builds_every_artifact(finished):
    base = finished.path("results/mira")
    features = json.loads((base / "features.json").read_text())
    schema = json.loads(finished.path("config/features.schema.json").read_text())
    assert validation_problem(features, schema) is None
    shots = plan_shots(finished)
    assert len(shots) == 8
    for shot in shots:
        assert (base / "images" / f"{shot['key']}.png").is_file()
        assert json.loads((base / "images" / f"{shot['key']}.json").read_text())["shot"] == shot
        assert (base / "scores" / f"{shot['key']}.json").is_file()
    rows = (base / "selection.tsv").read_text().splitlines()[1:]
    selected = [r.split("\t")[0] for r in rows if r.split("\t")[1] == "yes"]
    assert len(rows) == 8 and len(selected) == 6
    assert all(r.split("\t")[2] for r in rows), "every row carries a reason"
    subset = base / "dataset" / "1_mira_sl"
    assert sorted(p.stem for p in subset.glob("*.png")) == sorted(selected)
    for key in selected:
        caption = (subset / f"{key}.txt").read_text()
        assert caption.startswith("mira_sl, "), caption
        # a copy, not a hard link: damage to one must not reach the other
        image, copied = base / "images" / f"{key}.png", subset / f"{key}.png"
        assert copied.read_bytes() == image.read_bytes() and copied.stat().st_ino != image.stat().st_ino
    freq = json.loads((base / "tag_frequency.json").read_text())
    assert freq["mira_sl"] == 6
    folder = training(finished)  # results/mira/train/<fingerprint>/
    assert (folder / "dataset.toml").is_file() and (folder / "train.toml").is_file()
    assert json.loads((folder / "fingerprint.json").read_text())["images"] == sorted(selected)
    epochs = sorted((folder / "epochs").glob("*.safetensors"))
    assert [p.name for p in epochs] == ["mira-000001.safetensors", "mira-000002.safetensors"]
    best = json.loads((base / "eval" / folder.name / "best.json").read_text())["epoch"]  # evaluation picks the epoch
    assert (base / "lora" / "mira.safetensors").read_bytes() == epochs[best - 1].read_bytes()
    with safe_open(base / "lora" / "mira.safetensors", "pt") as f:
        keys = list(f.keys())
        meta = f.metadata()
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    assert meta["ss_output_name"] == "mira" and meta["ss_network_dim"] == "4" and meta["ss_epoch"] == str(best)


def test_immediate_rerun_has_nothing_to_do(finished):
    proc = finished.snakemake("-n")
    assert "Nothing to be done" in proc.output, proc.output[-2000:]
    assert not finished.jobs(proc)


def dataset_keys(wf):
    return sorted(p.stem for p in wf.root.glob("results/mira/dataset/*/*.png"))


def test_one_invocation_keeps_selection_dataset_and_training_consistent(project):
    """No --until: plan and select rerun mid-invocation; everything after them must see the new
    plan and selection, and training must rerun exactly when the selection changed."""
    before = selected_keys(project.path("results/mira/selection.tsv"))
    project.path("config/more.yaml").write_text("plan:\n  candidates: 12\n")
    run = project.snakemake(configfiles=(*TEST_CONFIG, "config/more.yaml"))
    jobs = project.jobs(run)
    after = selected_keys(project.path("results/mira/selection.tsv"))
    assert len(plan_shots(project)) == 12 and jobs["generate"] == 4
    assert dataset_keys(project) == sorted(after)
    assert jobs["train"] == int(sorted(after) != sorted(before)), (jobs, before, after)
    summary = json.loads((training(project, (*TEST_CONFIG, "config/more.yaml")) / "summary.json").read_text())
    with safe_open(project.path("results/mira/lora/mira.safetensors"), "pt") as f:
        assert int(f.metadata()["ss_num_train_images"]) == len(after)
    assert summary["checkpoints"]
    assert "Nothing to be done" in project.snakemake("-n", configfiles=(*TEST_CONFIG, "config/more.yaml")).output


def test_four_more_candidates_generate_exactly_four_images(project):
    before = snapshot(project)
    project.path("config/more.yaml").write_text("plan:\n  candidates: 12\n")
    files = (*TEST_CONFIG, "config/more.yaml")
    # A dry run cannot see past a stale plan checkpoint: bring the plan up to date first.
    project.snakemake("--until", "plan", configfiles=files)
    dry = project.snakemake("-n", configfiles=files)
    assert project.jobs(dry)["generate"] == 4, project.jobs(dry)
    run = project.snakemake(configfiles=files)
    assert project.jobs(run)["generate"] == 4
    after = snapshot(project)
    assert len(after) == 12
    for name, (data, mtime) in before.items():
        assert after[name] == (data, mtime), f"{name} was rewritten"


def test_feature_edit_regenerates_only_the_shots_that_show_it(project):
    old = {s["index"]: s for s in plan_shots(project)}
    before = snapshot(project)
    features_path = project.path("characters/mira/features.json")
    features = json.loads(features_path.read_text())
    boots = next(o for o in features["object"] if o["name"] == "boots")
    boots["description"] = "black knee-high boots with silver buckles"
    features_path.write_text(json.dumps(features, indent=2))

    project.snakemake("--until", "plan")
    new = {s["index"]: s for s in plan_shots(project)}
    changed = {i for i in new if new[i]["key"] != old[i]["key"]}
    full_body = {i for i in new if new[i]["tags"]["framings"] == "full body"}
    assert changed == full_body and 0 < len(changed) < len(new)
    dry = project.snakemake("-n")
    assert project.jobs(dry)["generate"] == len(changed)
    run = project.snakemake()
    assert project.jobs(run)["generate"] == len(changed)
    after = snapshot(project)
    for i, shot in old.items():
        if i not in changed:
            assert after[f"{shot['key']}.png"] == before[f"{shot['key']}.png"]


def test_schema_edit_that_changes_no_prompt_reruns_analysis_but_not_generation_or_training(project):
    lora = project.path("results/mira/lora/mira.safetensors")
    lora_state = (lora.read_bytes(), lora.stat().st_mtime_ns)
    before = snapshot(project)
    schema_path = project.path("config/features.schema.json")
    schema = json.loads(schema_path.read_text())
    schema["properties"]["age"] = {"type": "string", "description": "Apparent age, if it matters."}
    schema_path.write_text(json.dumps(schema, indent=2))

    run = project.snakemake()  # one invocation: timestamps alone would cascade to train
    jobs = project.jobs(run)
    assert jobs["analyze"] == 1 and jobs["plan"] == 1
    assert jobs["generate"] == 0 and jobs["train"] == 0, jobs
    assert snapshot(project) == before
    assert (lora.read_bytes(), lora.stat().st_mtime_ns) == lora_state
    assert "Nothing to be done" in project.snakemake("-n").output


def test_deleting_one_image_regenerates_exactly_that_image(project):
    victim = plan_shots(project)[3]["key"]
    path = project.path(f"results/mira/images/{victim}.png")
    original = path.read_bytes()
    path.unlink()
    dry = project.snakemake("-n")
    assert project.jobs(dry)["generate"] == 1
    run = project.snakemake()
    jobs = project.jobs(run)
    assert jobs["generate"] == 1 and jobs["train"] == 0, jobs
    assert path.read_bytes() == original, "generation is deterministic for a key"


def test_light_rules_never_import_torch(project, no_torch_hook):
    """plan, select, dataset and kohya_config run under an import hook that forbids torch."""
    hook = no_torch_hook
    # a rebuilt dataset is measured again by eval_metrics (the baseline), which is not a light rule
    run = project.snakemake("--forcerun", "plan", "select", "dataset", "kohya_config", "--omit-from", "eval_metrics",
                            env={"PYTHONPATH": str(hook)})
    jobs = project.jobs(run)
    assert {rule: jobs[rule] for rule in ("plan", "select", "dataset", "kohya_config")} == \
        {"plan": 1, "select": 1, "dataset": 1, "kohya_config": 1}, jobs
    assert not jobs["train"] and not jobs["evaluate"], jobs


def test_changed_training_value_retrains_once_and_going_back_is_free(project):
    """A hyperparameter edit with everything upstream current: one plain invocation trains a new
    folder and evaluates its epochs, nothing before it; going back to the old value trains nothing
    (its folder is still there) and only delivers again."""
    old_folder = training(project)
    project.path("config/dim.yaml").write_text("train:\n  network_dim: 8\n  network_alpha: 4.0\n")
    files = (*TEST_CONFIG, "config/dim.yaml")
    run = project.snakemake(configfiles=files)
    jobs = project.jobs(run)
    assert jobs["train"] == 1 and jobs["evaluate"] == 2 and jobs["eval_metrics"] == 2, jobs  # baseline kept
    assert jobs["generate"] == 0 and jobs["caption"] == 0 and jobs["dataset"] == 0, jobs
    assert training(project, files) != old_folder and old_folder.is_dir()
    with safe_open(project.path("results/mira/lora/mira.safetensors"), "pt") as f:
        assert f.metadata()["ss_network_dim"] == "8"
    assert "Nothing to be done" in project.snakemake("-n", configfiles=files).output

    back = project.snakemake()
    jobs = project.jobs(back)
    assert not (jobs["train"] or jobs["evaluate"] or jobs["eval_metrics"]), jobs
    assert jobs["deliver_lora"] == 1, jobs
    with safe_open(project.path("results/mira/lora/mira.safetensors"), "pt") as f:
        assert f.metadata()["ss_network_dim"] == "4"
    assert "Nothing to be done" in project.snakemake("-n").output


def test_new_reference_image_measures_the_evaluation_again_in_one_invocation(project):
    """The reference feeds the near-copy guard and the evaluation's identity_reference: a new one
    reruns those, in the same invocation, and renders or trains nothing."""
    from PIL import Image, ImageOps

    ref = project.path("characters/mira/reference.png")
    with Image.open(ref) as im:
        ImageOps.mirror(im.convert("RGB")).save(ref)
    run = project.snakemake()
    jobs = project.jobs(run)
    assert jobs["embed_reference"] == 1 and jobs["select"] == 1 and jobs["eval_metrics"] == 3, jobs
    assert not (jobs["generate"] or jobs["train"] or jobs["evaluate"]), jobs
    assert "Nothing to be done" in project.snakemake("-n").output
