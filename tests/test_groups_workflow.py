"""Several characters end to end (issue 17), with real snakemake runs on a copy of the finished test
run: Mira, Ada and the pair, one multi-concept LoRA over the three; then an edit of one of Ada's features regenerates Ada's changed
shots and the group shots that name it, never Mira's."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from safetensors import safe_open

from synthlora.kohya import read_toml
from conftest import TEST_CONFIG

pytestmark = pytest.mark.workflow

# The groups example on the test run, smaller still: 4 shots each, one saved epoch, one test prompt.
SMALL = {"plan": {"candidates": 4}, "select": {"count": 3, "min_count": 2},
         "train": {"max_train_epochs": 1},
         "evaluate": {"suites": {"consistency": ["{trigger}, smiling, 3/4 view"]}}}


def configfiles(wf):
    wf.path("config/small.yaml").write_text(yaml.safe_dump(SMALL))
    return (*TEST_CONFIG, "config/examples/groups.yaml", "config/small.yaml")


def plan(wf, name):
    return {s["index"]: s for s in json.loads(wf.path(f"results/{name}/plan.json").read_text())["shots"]}


def generate_keys(proc):
    """(subject, key) of every generate job a (dry) run lists."""
    return set(re.findall(r"rule generate:\n(?:[ \t]+.*\n)*?[ \t]+wildcards: character=(\w+), key=([0-9a-f]{16})",
                          proc.output))


def test_two_characters_the_pair_and_one_lora_that_knows_them(project):
    files = configfiles(project)
    run = project.snakemake(configfiles=files)
    jobs = project.jobs(run)
    assert jobs["train"] == 1, "one LoRA for the three subjects, none per character"
    # Mira's first four shots are the finished test run's: only Ada's and the pair's are new
    assert {c for c, _ in generate_keys(run)} == {"ada", "mira_and_ada"} and jobs["generate"] == 8
    base = project.path("results")

    # the group: both members in every prompt, both triggers first in every caption
    pair = plan(project, "mira_and_ada")
    assert all("on the left, Mira" in s["prompt"] and "on the right, Ada" in s["prompt"] for s in pair.values())
    captions = sorted((base / "mira_and_ada/dataset/1_mira_and_ada").glob("*.txt"))
    assert captions and all(c.read_text().startswith("mira_sl, ada_sl, ") for c in captions)
    assert (base / "mira_and_ada/reference.png").is_file()  # the members' references side by side

    # the LoRA: one dataset.toml, a subset per member with its repeats and keep_tokens
    folder = next((base / "duo/train").iterdir())
    subsets = read_toml(folder / "dataset.toml")["datasets"][0]["subsets"]
    assert [(s["image_dir"].rsplit("/", 1)[1], s["num_repeats"], s["keep_tokens"]) for s in subsets] == \
        [("1_mira_sl", 1, 1), ("1_ada_sl", 1, 1), ("2_mira_and_ada", 2, 2)]
    fingerprint = json.loads((folder / "fingerprint.json").read_text())
    for sub, name in zip(subsets, ["mira", "ada", "mira_and_ada"]):
        copied = sorted(p.name for p in project.path(sub["image_dir"]).glob("*"))
        assert copied == sorted(p.name for p in (base / name / "dataset").glob("*/*"))
        assert {p[:-4] for p in copied if p.endswith(".png")} <= set(fingerprint["images"])
    with safe_open(base / "duo/lora/duo.safetensors", "pt") as f:
        assert f.metadata()["ss_output_name"] == "duo"
        dirs = json.loads(f.metadata()["ss_dataset_dirs"])
    assert len(dirs) == 3

    # evaluation per trigger, and its table in the card
    best = json.loads((base / f"duo/eval/{folder.name}/best.json").read_text())
    rows = json.loads((base / f"duo/eval/{folder.name}/{best['run']}/triggers.json").read_text())["rows"]
    assert [r["subject"] for r in rows] == ["mira", "ada", "mira_and_ada"]
    assert all({"mira", "ada", "own", "leakage"} <= set(r) for r in rows)
    card = (base / "duo/MODEL_CARD.md").read_text()
    assert "`mira_sl, ada_sl`" in card and "Evaluation per trigger" in card and "leakage" in card

    # Edit one of Ada's features: only her shots and the group shots that show it are new.
    mira_before, ada_before, pair_before = plan(project, "mira"), plan(project, "ada"), pair
    features = project.path("characters/ada/features.json")
    doc = json.loads(features.read_text())
    next(o for o in doc["object"] if o["name"] == "shoes")["description"] = "white sneakers"
    features.write_text(json.dumps(doc, indent=2))
    project.snakemake("--until", "plan", configfiles=files)
    assert plan(project, "mira") == mira_before
    ada, pair = plan(project, "ada"), plan(project, "mira_and_ada")
    changed = {("ada", ada[i]["key"]) for i in ada if ada[i]["key"] != ada_before[i]["key"]}
    changed |= {("mira_and_ada", pair[i]["key"]) for i in pair if pair[i]["key"] != pair_before[i]["key"]}
    assert all("white sneakers" in s["prompt"] for c, k in changed for s in (ada if c == "ada" else pair).values()
               if s["key"] == k)
    unchanged_pair = [i for i in pair if pair[i]["key"] == pair_before[i]["key"]]
    assert {c for c, _ in changed} == {"ada", "mira_and_ada"} and unchanged_pair, "feet show in some framings only"
    assert all("white sneakers" not in pair[i]["prompt"] for i in unchanged_pair)
    assert generate_keys(project.snakemake("-n", configfiles=files)) == changed
