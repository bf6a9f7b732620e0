"""Incremental rebuilds after editing the schema (issue 13), with the manual analyzer: switching
between the three example schemas, and editing features under one, regenerates exactly the shots
whose prompt text changed; a schema whose fields would leave prompts without the character fails
before any job."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from conftest import TEST_CONFIG
from test_bad_input import fails_before_any_job

pytestmark = pytest.mark.workflow

EXAMPLES = {
    "seed": ("config/features.schema.json", "characters/mira/features.json"),
    "rich": ("config/examples/features.rich.schema.json", "characters/mira/features.rich.json"),
    "minimal": ("config/examples/features.minimal.schema.json", "characters/mira/features.minimal.json"),
}


def use_schema(wf, name):
    """Config files that point mira at one example schema and its features file."""
    schema, features = EXAMPLES[name]
    wf.path("config/schema.yaml").write_text(yaml.safe_dump(
        {"characters": {"mira": {"features_schema": schema, "features_manual": features}}}))
    return (*TEST_CONFIG, "config/schema.yaml")


def replan(wf, files):
    """Run analyze and plan (cheap with the manual analyzer); the plan's shots by index."""
    wf.snakemake("--until", "plan", configfiles=files)
    return {s["index"]: s for s in json.loads(wf.path("results/mira/plan.json").read_text())["shots"]}


def images_on_disk(wf):
    return {p.stem for p in wf.root.glob("results/mira/images/*.png")}


def generate_keys(proc):
    """The keys of the generate jobs a (dry) run lists."""
    return set(re.findall(r"rule generate:\n(?:[ \t]+.*\n)*?[ \t]+wildcards: character=mira, key=([0-9a-f]{16})",
                          proc.output))


def changed_shots(old, new):
    """Indices whose prompt text changed; the key must change exactly there."""
    changed = {i for i in new if new[i]["prompt"] != old[i]["prompt"]}
    assert changed == {i for i in new if new[i]["key"] != old[i]["key"]}, "a key follows its prompt text only"
    return changed


def test_switching_and_editing_schemas_regenerates_exactly_the_changed_shots(project):
    seed = {s["index"]: s for s in json.loads(project.path("results/mira/plan.json").read_text())["shots"]}
    built = images_on_disk(project)

    # seed → rich: every shot whose text changed, and only those, is generated.
    files = use_schema(project, "rich")
    rich = replan(project, files)
    changed = changed_shots(seed, rich)
    assert changed and all(rich[i]["prompt"].startswith("Mira, a young adult woman") for i in rich)
    dry = project.snakemake("-n", configfiles=files)
    assert generate_keys(dry) == {rich[i]["key"] for i in changed} - built

    # An edit inside the rich schema's features (an optional list dropped from the trousers) changes
    # only the shots whose framing shows the legs. The others' images are built first, so that a
    # dry run would list them if they were redone.
    framings = yaml.safe_load(project.path("config/config.schema.yaml").read_text())["properties"]["plan"]["properties"]["framings"]["default"]
    legs = {i for i in rich if "legs" in framings[rich[i]["tags"]["framings"]]["shows"]}
    assert 0 < len(legs) < len(rich)
    project.snakemake(*[f"results/mira/images/{rich[i]['key']}.png" for i in set(rich) - legs], configfiles=files)
    features_path = project.path("characters/mira/features.rich.json")
    features = json.loads(features_path.read_text())
    trousers = next(p for p in features["parts"] if p["name"] == "trousers")
    del trousers["colors"]
    features_path.write_text(json.dumps(features, indent=2))
    edited = replan(project, files)
    changed = changed_shots(rich, edited)
    assert changed == legs
    assert all("trousers: straight-cut trousers;" in edited[i]["prompt"] or "trousers: straight-cut trousers." in edited[i]["prompt"]
               for i in changed), "no empty punctuation where the list was"
    dry = project.snakemake("-n", configfiles=files)
    assert generate_keys(dry) == {edited[i]["key"] for i in changed}

    # rich → minimal: new text everywhere, so every shot is new.
    files = use_schema(project, "minimal")
    minimal = replan(project, files)
    changed = changed_shots(edited, minimal)
    dry = project.snakemake("-n", configfiles=files)
    assert generate_keys(dry) == {minimal[i]["key"] for i in changed} - images_on_disk(project)

    # Back to the seed schema: its prompts are exactly as before, its images are all there.
    files = use_schema(project, "seed")
    assert {i: s["key"] for i, s in replan(project, files).items()} == {i: s["key"] for i, s in seed.items()}
    dry = project.snakemake("-n", configfiles=files)
    assert not generate_keys(dry), dry.output[-2000:]


def test_renamed_schema_fields_fail_before_any_job_naming_the_field(project):
    """The issue's case: a valid JSON Schema with `summary` for `description` and `elements` for
    `object` used to plan prompts without the character, and exit 0."""
    path = project.path("config/features.schema.json")
    schema = json.loads(path.read_text())
    del schema["x-synthlora"]
    schema["properties"] = {"summary": schema["properties"]["description"], "elements": schema["properties"]["object"]}
    schema["required"] = ["summary", "elements"]
    path.write_text(json.dumps(schema, indent=2))
    fails_before_any_job(project, "characters.mira.features_schema", "config/features.schema.json", "'description'",
                         "elements, summary", "x-synthlora")
    # Saying which fields hold the text fixes it.
    fixed = copy.deepcopy(schema)
    fixed["x-synthlora"] = {"summary": ["summary"], "objects": "elements"}
    path.write_text(json.dumps(fixed, indent=2))
    assert project.snakemake("-n", check=False).returncode == 0
