"""Several characters (issue 17), without running the workflow: the group plan names each member's
features, a group candidate needs its member count of figures and every member's identity, a
multi-concept LoRA's dataset.toml has a subset per member that sd-scripts' checks accept, the
evaluation per trigger measures leakage, and a config without groups: and loras: is unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from synthlora.config import ConfigError, check_characters, load_config
from synthlora.feature_text import DEFAULT_MAPPING
from synthlora.groups import (group_checks, lora_dataset_toml, lora_suite_items, make_group_plan, member_similarities,
                              subject_entry, trigger_table)
from synthlora.kohya import fingerprint, training_inputs, validate_dataset
from synthlora import layout
from conftest import TEST_CONFIG

REPO = Path(__file__).resolve().parents[1]
GROUPS = (*TEST_CONFIG, "config/examples/groups.yaml")
MIRA = json.loads((REPO / "characters/mira/features.json").read_text())
ADA = json.loads((REPO / "characters/ada/features.json").read_text())


@pytest.fixture
def cfg(monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_config(GROUPS, REPO)
    check_characters(config)
    return config


def plan(cfg, mira=MIRA, ada=ADA):
    members = [("mira", mira, DEFAULT_MAPPING), ("ada", ada, DEFAULT_MAPPING)]
    return {s["index"]: s for s in make_group_plan(members, cfg["plan"], cfg["generate"])["shots"]}


def test_group_shots_name_each_member_in_order_with_interaction_poses(cfg):
    shots = plan(cfg)
    assert len(shots) == cfg["plan"]["candidates"]
    for s in shots.values():
        left, right = s["prompt"].index("on the left, Mira"), s["prompt"].index("on the right, Ada")
        assert s["prompt"].startswith("two characters together, ") and left < right
        assert s["tags"]["poses"] in cfg["plan"]["group_poses"] and "solo" not in s["prompt"]
    assert len({s["key"] for s in shots.values()}) == len(shots)


def test_editing_one_members_feature_changes_only_the_group_shots_that_show_it(cfg):
    before = plan(cfg)
    ada = copy.deepcopy(ADA)
    next(o for o in ada["object"] if o["name"] == "shoes")["description"] = "white sneakers"
    after = plan(cfg, ada=ada)
    feet = {i for i, s in before.items() if "feet" in cfg["plan"]["framings"][s["tags"]["framings"]]["shows"]}
    assert 0 < len(feet) < len(before)
    assert {i for i in after if after[i]["key"] != before[i]["key"]} == feet
    assert all("white sneakers" in after[i]["prompt"] for i in feet)


def test_group_shot_keys_hold_what_the_backend_sends(cfg):
    """Keys are built as a character's are: the Images API gets no negative prompt, so editing it
    re-buys no group image; the local diffusers backend renders with it, so its keys change."""
    from synthlora.plan import pixel_inputs

    members = [("mira", MIRA, DEFAULT_MAPPING), ("ada", ADA, DEFAULT_MAPPING)]

    def keys(generate, negative):
        plan_cfg = {**cfg["plan"], "negative_prompt": negative}
        return [s["key"] for s in make_group_plan(members, plan_cfg, generate)["shots"]]

    openai = {**cfg["generate"], "backend": "openai", "model": "gpt-image-2"}
    assert keys(openai, "blurry") == keys(openai, "extra fingers")
    assert len(set(keys(openai, "blurry"))) == cfg["plan"]["candidates"]
    assert keys(cfg["generate"], "blurry") != keys(cfg["generate"], "extra fingers")


def candidate(key, figures, vector):
    return {"key": key, "tags": {}, "score": {"decodes": True, "figures": figures, "heads": None}, "vector": vector}


def test_a_group_candidate_needs_its_member_count_of_figures_and_every_members_identity(cfg):
    checks = group_checks(["mira", "ada"])
    names = [c.check_name for c in checks]
    assert "wrong number of figures" in names and "member missing" in names and "more than one figure" not in names
    s = {**cfg["select"], "group_figure_check": True}
    by_name = {c.check_name: c for c in checks}
    both, one = candidate("a", 2, [1.0, 1.0]), candidate("b", 1, [1.0, 0.0])
    member_similarities([both, one], {"mira": [1.0, 0.0], "ada": [0.0, 1.0]})
    assert by_name["wrong number of figures"](both, s) is None
    assert "1 separate figures; the group has 2" in by_name["wrong number of figures"](one, s)
    assert by_name["member missing"](both, s) is None  # 0.707 to each
    assert "ada 0.000" in by_name["member missing"](one, s)


def test_multi_concept_dataset_toml_has_a_subset_per_member_that_sd_scripts_checks_accept(cfg):
    doc = lora_dataset_toml(cfg, "duo")
    validate_dataset(doc)
    subsets = doc["datasets"][0]["subsets"]
    assert [s["image_dir"] for s in subsets] == ["results/duo/dataset/1_mira_sl", "results/duo/dataset/1_ada_sl",
                                                 "results/duo/dataset/2_mira_and_ada"]
    assert [s["keep_tokens"] for s in subsets] == [1, 1, 2]  # both triggers stay first in group captions
    assert [s["num_repeats"] for s in subsets] == [1, 1, 2]
    assert subsets[2]["class_tokens"] == "mira_sl, ada_sl"
    assert layout.caption_settings(cfg, "mira_and_ada")["trigger"] == "mira_sl, ada_sl"


def test_the_builtin_trainer_reads_every_subset_with_its_own_keep_tokens(cfg, tmp_path, monkeypatch):
    from synthlora.train import _items, caption_for_step

    monkeypatch.chdir(tmp_path)
    doc = lora_dataset_toml(cfg, "duo")
    doc["general"]["shuffle_caption"] = True
    for sub, caption in zip(doc["datasets"][0]["subsets"], ["mira_sl, a, b, c", "ada_sl, a, b, c",
                                                            "mira_sl, ada_sl, a, b, c"]):
        Path(sub["image_dir"]).mkdir(parents=True)
        Path(sub["image_dir"], "k.png").write_bytes(b"")
        Path(sub["image_dir"], "k.txt").write_text(caption)
    items = _items(doc)
    assert [(it["repeats"], it["keep_tokens"]) for it in items] == [(1, 1), (1, 1), (2, 2)]
    import random

    rng = random.Random(0)
    for _ in range(20):
        assert caption_for_step(items[2], rng).startswith("mira_sl, ada_sl, ")


def test_evaluation_per_trigger_renders_each_member_and_measures_leakage(cfg):
    items = lora_suite_items(cfg, "duo")
    subjects = {it["subject"]: it["prompt"] for it in items}
    assert set(subjects) == {"mira", "ada", "mira_and_ada"}
    assert subjects["mira_and_ada"].startswith("mira_sl, ada_sl") and "ada_sl" not in subjects["mira"]
    assert len({it["name"] for it in items}) == len(items)
    centres = {"mira": np.array([1.0, 0.0]), "ada": np.array([0.0, 1.0])}
    # ada's renders look half like mira: that is leakage; the pair looks like both
    vectors = {it["name"]: {"mira": np.array([1.0, 0.0]), "ada": np.array([0.6, 0.8]),
                            "mira_and_ada": np.array([0.707, 0.707])}[it["subject"]] for it in items}
    rows = {r["subject"]: r for r in trigger_table(items, vectors, centres,
                                                   {"mira": ["mira"], "ada": ["ada"], "mira_and_ada": ["mira", "ada"]})}
    assert rows["ada"]["own"] == 0.8 and rows["ada"]["leakage"] == 0.6
    assert rows["mira"]["leakage"] == 0.0
    assert rows["mira_and_ada"]["own"] == pytest.approx(0.707)


def test_config_errors_name_the_key(cfg):
    bad = copy.deepcopy(cfg)
    bad["groups"]["trio"] = ["mira", "zoe"]
    with pytest.raises(ConfigError, match=r"groups\.trio names 'zoe'"):
        check_characters(bad)
    bad = copy.deepcopy(cfg)
    bad["loras"]["mira"] = {"members": ["mira", "ada"]}
    with pytest.raises(ConfigError, match=r"loras\.mira: 'mira' is a character's name"):
        check_characters(bad)
    bad = copy.deepcopy(cfg)
    bad["characters"]["ada"]["trigger"] = "mira_sl"
    with pytest.raises(ConfigError, match="share a trigger"):
        check_characters(bad)


def test_one_character_without_groups_or_loras_is_unchanged(monkeypatch):
    monkeypatch.chdir(REPO)
    config = load_config(TEST_CONFIG, REPO)
    assert subject_entry(config, "mira") is config["characters"]["mira"]
    keys = ["0123456789abcdef"]
    before = training_inputs(config["train"], "mira", "results/mira/dataset", "mira_sl", keys,
                             {"trigger": "mira_sl", "vocabulary": {c: sorted(config["plan"][c]) for c in config["caption"]["categories"]},
                              **{k: v for k, v in config["caption"].items() if k != "device"}})
    assert fingerprint(layout.training_inputs_for(config, "mira", keys)) == fingerprint(before)


def test_the_kohya_backend_gets_the_multi_concept_dataset_toml(cfg, tmp_path, monkeypatch):
    """sd-scripts itself is not installable here: its stand-in reads the TOMLs as sd-scripts does
    and fails on a subset folder that is not there."""
    from synthlora.kohya import train_toml, write_toml
    from synthlora.kohya_run import run_kohya
    from test_kohya_backend import KOHYA

    monkeypatch.chdir(tmp_path)
    doc = lora_dataset_toml(cfg, "duo")
    for sub in doc["datasets"][0]["subsets"]:
        Path(sub["image_dir"]).mkdir(parents=True)
    write_toml("dataset.toml", doc)
    write_toml("train.toml", train_toml({**cfg["train"], "backend": "kohya", "max_train_epochs": 1}, "duo",
                                        str(tmp_path / "epochs")))
    argv = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_SD_ARGV", str(argv))
    summary = run_kohya("train.toml", "dataset.toml", "sdxl", KOHYA, "fp")
    assert [Path(c["path"]).name for c in summary["checkpoints"]] == ["duo-000001.safetensors"]
    assert json.loads(argv.read_text())["argv"][-1] == "dataset.toml"


def test_a_group_shot_asks_each_members_must_preserve_features_about_its_place(cfg):
    from synthlora.groups import group_feature_questions

    features = {"members": {"mira": MIRA, "ada": ADA}}
    portrait = cfg["plan"]["framings"]["portrait"]
    asked = group_feature_questions(features, {"mira": DEFAULT_MAPPING, "ada": DEFAULT_MAPPING}, portrait,
                                    cfg["plan"]["regions"])
    assert asked["Is the star hairpin of the character on the left in the image, looking as described "
                 "(star hairpin: yellow star-shaped hairpin)?"] == "mira: star hairpin"
    assert "ada: glasses" in asked.values()
    assert not any(f.endswith(("boots", "shoes")) for f in asked.values()), "feet are not in a portrait"
