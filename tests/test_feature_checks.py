"""Per-image checks of the must-preserve features (issue: seed 000 caught lost details by eye):
the caption model is asked about each feature its shot's framing shows, and a 'no' rejects the
picture naming the feature; pass rates reach selection.tsv, the summary and the model card."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from conftest import REPO, TEST_CONFIG, _env
from openai_standin import StandIn
from synthlora.feature_text import feature_questions, prompt_mapping
from synthlora.features import load_schema
from synthlora.selection import feature_pass_rates, keeps_must_preserve_features, missing_features

KEY, KEY_ENV = "sk-test-features", "SYNTHLORA_TEST_FEATURES_KEY"
FEATURES = json.loads((REPO / "characters/mira/features.json").read_text())
REGIONS = {"head": ["head", "face", "hair", "eye"], "torso": ["torso", "arm"], "hips": ["waist"],
           "legs": ["leg"], "feet": ["feet", "foot"]}


def mapping():
    schema = str(REPO / "config/features.schema.json")
    return prompt_mapping(load_schema(schema), schema)


def test_questions_follow_the_framing():
    portrait = feature_questions(FEATURES, mapping(), {"phrase": "", "shows": ["head"]}, REGIONS)
    full_body = feature_questions(FEATURES, mapping(), {"phrase": "", "shows": list(REGIONS)}, REGIONS)
    assert set(portrait.values()) == {"hair", "star hairpin", "eyes"}
    assert set(full_body.values()) == {o["name"] for o in FEATURES["object"]}
    boots = next(q for q, f in full_body.items() if f == "boots")
    assert "red ankle boots" in boots, "the question says what the feature must look like"
    assert feature_questions(FEATURES, mapping(), None, REGIONS) == full_body, "no framing: ask about every feature"


def test_a_candidate_without_a_feature_is_rejected_naming_it():
    asked = {"Is the character's boots …?": "boots", "Is the character's hair …?": "hair"}
    c = {"answers": {"Is the character's boots …?": "no", "Is the character's hair …?": "yes"}, "must_preserve": asked}
    assert missing_features(c) == ["boots"]
    assert "boots" in keeps_must_preserve_features(c, {}) and "hair" not in keeps_must_preserve_features(c, {})
    assert keeps_must_preserve_features({"answers": {}, "must_preserve": {}}, {}) is None
    rows = [{"features_checked": "boots; hair", "features_missing": "boots"},
            {"features_checked": "boots; hair", "features_missing": ""}, {"features_checked": "hair"}]
    assert feature_pass_rates(rows) == {"boots": {"asked": 2, "kept": 1}, "hair": {"asked": 3, "kept": 3}}


@pytest.mark.workflow
def test_the_caption_model_rejects_candidates_that_lost_a_feature(fresh):
    with StandIn(key=KEY) as api:
        api.yes_no = [("", "yes"), ("boots", "no")]  # every feature kept, except the boots
        conn = f"base_url: {api.url}\n    api_key_env: {KEY_ENV}\n    timeout: 5\n    max_retries: 1\n"
        fresh.path("config/features.yaml").write_text(
            f"generate:\n  backend: openai\n  model: gpt-image-2\n  openai:\n    {conn}"
            f"caption:\n  backend: openai\n  model: gpt-5.5\n  openai:\n    {conn}"
            "select:\n  feature_checks: true\n  count: 4\n  min_count: 1\n")
        files = (*TEST_CONFIG, "config/features.yaml")
        estimate = subprocess.run([sys.executable, "-m", "synthlora.generation", "estimate", "--configfile", *files],
                                  cwd=fresh.root, capture_output=True, text=True, env=_env({KEY_ENV: KEY}), check=True)
        assert "ask " in estimate.stdout and "8 calls" in estimate.stdout, estimate.stdout
        fresh.snakemake("results/mira/selection.tsv", configfiles=files, env={KEY_ENV: KEY})
    plan = {s["key"]: s for s in json.loads(fresh.path("results/mira/plan.json").read_text())["shots"]}
    with open(fresh.path("results/mira/selection.tsv"), newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    shows_feet = {"full body"}
    for r in rows:
        framing = plan[r["key"]]["tags"]["framings"]
        assert ("boots" in r["features_checked"]) == (framing in shows_feet), (framing, r["features_checked"])
        if framing in shows_feet:
            assert r["selected"] == "no" and "missing must-preserve feature: boots" in r["reason"]
            assert r["features_missing"] == "boots"
        assert "hair" in r["features_checked"] and "hair" not in r["features_missing"]
    assert any(plan[r["key"]]["tags"]["framings"] in shows_feet for r in rows), "the test needs a full-body shot"
    summary = json.loads(fresh.path("results/mira/selection_summary.json").read_text())
    asked_boots = sum(plan[r["key"]]["tags"]["framings"] in shows_feet for r in rows)
    assert summary["features"]["boots"] == {"asked": asked_boots, "kept": 0}
    assert summary["features"]["hair"] == {"asked": len(rows), "kept": len(rows)}
