"""How a feature schema becomes prompt text (issue 13): the schema's "x-synthlora" mapping, checked
against the schema; flattening of nested objects, lists, enums and optional fields; consistency
text; long prompts split for CLIP, never cut."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from synthlora.backends.diffusers_gen import prompt_chunks
from synthlora.captions import clip_tokens_at_least
from synthlora.config import ConfigError, check_caption_length
from synthlora.feature_text import (feature_objects, must_preserve_objects, prompt_mapping, summary_text,
                                    visible_objects)
from synthlora.features import FeaturesError, validation_problem
from synthlora.plan import PlanError, make_plan, template_problem

from test_plan import defaults

REPO = Path(__file__).resolve().parents[1]
SEED_SCHEMA = json.loads((REPO / "config/features.schema.json").read_text())
SEED_FEATURES = json.loads((REPO / "characters/mira/features.json").read_text())
EXAMPLES = {
    "seed": ("config/features.schema.json", "characters/mira/features.json"),
    "rich": ("config/examples/features.rich.schema.json", "characters/mira/features.rich.json"),
    "minimal": ("config/examples/features.minimal.schema.json", "characters/mira/features.minimal.json"),
}


def load(name):
    schema_file, features_file = EXAMPLES[name]
    return json.loads((REPO / schema_file).read_text()), json.loads((REPO / features_file).read_text())


def renamed_schema(with_mapping: bool) -> dict:
    """The seed schema with its fields renamed as a user might: summary/elements/label/text/where."""
    schema = copy.deepcopy(SEED_SCHEMA)
    del schema["x-synthlora"]
    item = schema["properties"].pop("object")
    item["items"]["properties"] = {"label": item["items"]["properties"]["name"],
                                   "text": item["items"]["properties"]["description"],
                                   "where": item["items"]["properties"]["position"]}
    item["items"]["required"] = ["label", "text", "where"]
    schema["properties"] = {"summary": schema["properties"]["description"], "elements": item}
    schema["required"] = ["summary", "elements"]
    if with_mapping:
        schema["x-synthlora"] = {"summary": ["summary"], "objects": "elements", "object_text": ["label", "text"],
                                 "position": "where"}
    return schema


def renamed_features() -> dict:
    return {"summary": SEED_FEATURES["description"],
            "elements": [{"label": o["name"], "text": o["description"], "where": o["position"]} for o in SEED_FEATURES["object"]]}


def test_renamed_fields_without_a_mapping_fail_naming_the_field_and_the_fields_there_are():
    with pytest.raises(FeaturesError) as e:
        prompt_mapping(renamed_schema(with_mapping=False), "my.schema.json")
    message = str(e.value)
    assert "my.schema.json" in message and "'description'" in message and "x-synthlora" in message
    assert "elements, summary" in message, "lists the fields the schema does have"


def test_renamed_fields_with_a_mapping_give_the_same_prompts_and_keys():
    """Renaming fields (and saying so in the mapping) changes no prompt: no image would be redone."""
    cfg = defaults()
    seed = make_plan(SEED_FEATURES, cfg["plan"], cfg["generate"], prompt_mapping(SEED_SCHEMA, "seed"))
    mapping = prompt_mapping(renamed_schema(with_mapping=True), "renamed")
    assert validation_problem(renamed_features(), renamed_schema(with_mapping=True)) is None
    renamed = make_plan(renamed_features(), cfg["plan"], cfg["generate"], mapping)
    assert renamed == seed


@pytest.mark.parametrize("mapping, needles", [
    ({"summary": ["descripton"]}, ["'descripton'", "description, object"]),
    ({"objects": "description"}, ["'description'", "not a list of objects"]),
    ({"object_text": ["name", "colour"]}, ["'colour'", "each item of 'object'", "description, name, position"]),
    ({"position": "where"}, ["'where'"]),
    ({"must_preserve": "name"}, ["'name'", "yes/no"]),
    ({"summary": ["description"], "sumary": ["x"]}, ["'sumary'", "summary ("]),
    ({"templates": {"description": "no placeholder"}}, ["templates", "{}"]),
])
def test_mapping_mistakes_are_named(mapping, needles):
    schema = {**SEED_SCHEMA, "x-synthlora": mapping}
    with pytest.raises(FeaturesError) as e:
        prompt_mapping(schema, "features.schema.json")
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def test_a_boolean_field_cannot_be_the_summary():
    schema = copy.deepcopy(SEED_SCHEMA)
    schema["properties"]["cute"] = {"type": "boolean"}
    schema["x-synthlora"] = {**schema["x-synthlora"], "summary": ["cute"]}
    with pytest.raises(FeaturesError, match="'cute', which is of type 'boolean'"):
        prompt_mapping(schema, "s.json")


def test_a_schema_whose_text_fields_are_all_optional_fails():
    """Valid features could then leave every prompt without the character."""
    schema = copy.deepcopy(SEED_SCHEMA)
    schema["required"] = []
    with pytest.raises(FeaturesError, match="name no required field, so valid features could leave every prompt without the character"):
        prompt_mapping(schema, "s.json")


def test_the_example_schemas_map_their_fields_and_their_features_are_valid():
    for name in EXAMPLES:
        schema, features = load(name)
        assert validation_problem(features, schema) is None, name
        mapping = prompt_mapping(schema, name)
        cfg = defaults()
        for shot in make_plan(features, cfg["plan"], cfg["generate"], mapping)["shots"]:
            assert shot["prompt"].startswith("Mira, a young adult woman"), shot["prompt"]


def test_nested_objects_lists_enums_and_templates_read_as_text():
    schema, features = load("rich")
    mapping = prompt_mapping(schema, "rich")
    summary = summary_text(features, mapping)
    assert "anime style" in summary                      # enum + template
    assert "slim build, average height" in summary       # nested object, a template per field
    assert "colour palette dark blue, teal, orange" in summary  # list of strings
    assert "casual outfit, outfit notes: jacket open, hood down" in summary  # nested, with and without template
    pin = next(o for o in feature_objects(features, mapping) if o["name"] == "star hairpin")
    assert pin["text"] == "star hairpin: star-shaped hairpin, in yellow, on the right side"


def test_missing_optional_fields_leave_no_empty_punctuation():
    schema, features = load("rich")
    mapping = prompt_mapping(schema, "rich")
    for key in ("name", "body", "palette"):
        features.pop(key, None)
    features["outfit"].pop("notes")
    for part in features["parts"]:
        part.pop("colors", None)
        part.pop("side", None)
    cfg = defaults()
    for shot in make_plan(features, cfg["plan"], cfg["generate"], mapping)["shots"]:
        prompt = shot["prompt"]
        for junk in (", ,", ". .", "; ;", ": ,", ":.", ", .", ",,", "in ,", "on the  side"):
            assert junk not in prompt, (junk, prompt)
        assert prompt.startswith("a young adult woman")


def test_must_preserve_objects_follow_the_schema_flag_and_sit_first():
    schema, features = load("rich")
    mapping = prompt_mapping(schema, "rich")
    regions = defaults()["plan"]["regions"]
    kept = must_preserve_objects(features, mapping, regions)
    assert "trousers" not in [o["name"] for o in kept]
    boots = next(o for o in kept if o["name"] == "boots")
    assert boots == {"name": "boots", "text": "boots: ankle boots, in red", "regions": ["feet"]}
    objects = feature_objects(features, mapping)
    assert objects[-1]["name"] == "trousers", "objects that may vary come after the must-preserve ones"
    full_body = defaults()["plan"]["framings"]["full body"]
    assert [o["name"] for o in visible_objects(objects, full_body, regions)][-1] == "trousers"
    listed = {**mapping, "must_preserve": ["eyes", "boots"]}
    assert [o["name"] for o in must_preserve_objects(features, listed, regions)] == ["eyes", "boots"]


def test_a_shot_without_any_character_text_fails_the_plan():
    features = {"description": "", "object": [{"name": "boots", "description": "red boots", "position": "feet"}]}
    cfg = defaults()
    with pytest.raises(PlanError, match=r"shot \d+ \(portrait\) would have no text about the character.*description"):
        make_plan(features, cfg["plan"], cfg["generate"])


def test_consistency_text_is_in_every_prompt_and_key():
    cfg = defaults()
    plain = make_plan(SEED_FEATURES, cfg["plan"], cfg["generate"])["shots"]
    spec = "flat cel shading, clean line art, same proportions in every image"
    consistent = make_plan(SEED_FEATURES, cfg["plan"], cfg["generate"], consistency=spec)["shots"]
    assert all(s["prompt"].endswith(", " + spec) for s in consistent)
    assert not {s["key"] for s in plain} & {s["key"] for s in consistent}
    assert not any("  " in s["prompt"] or s["prompt"].endswith(",") for s in plain), "empty consistency adds nothing"
    placed = {**cfg["plan"], "prompt_template": "{consistency}. {summary}. {objects}. {view}, {framing}"}
    assert all(s["prompt"].startswith(spec + ". Mira") for s in
               make_plan(SEED_FEATURES, placed, cfg["generate"], consistency=spec)["shots"])
    # a template without {consistency} still carries it, at the end
    bare = {**cfg["plan"], "prompt_template": "{summary}. {objects}. {view}"}
    assert all(s["prompt"].endswith(", " + spec) for s in
               make_plan(SEED_FEATURES, bare, cfg["generate"], consistency=spec)["shots"])


def test_prompt_template_placeholders_are_checked():
    assert template_problem(defaults()["plan"]["prompt_template"]) is None
    assert "{descriptoin}" in template_problem("{descriptoin}. {objects}")
    assert template_problem("{summary} {") is not None


def test_long_prompts_split_into_chunks_at_phrase_boundaries_and_lose_nothing():
    """The diffusers backend encodes each chunk on its own (A1111 style); counting words stands in for
    the CLIP tokenizer here."""
    words = lambda text: len(text.split())  # noqa: E731
    cfg = defaults()
    prompt = max((s["prompt"] for s in make_plan(SEED_FEATURES, cfg["plan"], cfg["generate"])["shots"]), key=len)
    chunks = prompt_chunks(prompt, words, limit=20)
    assert len(chunks) > 1 and all(words(c) <= 20 for c in chunks)
    assert " ".join(chunks) == prompt, "nothing is cut"
    assert all(c[-1] in ",;." for c in chunks[:-1]), "chunks end at a phrase boundary"
    assert prompt_chunks("short prompt", words) == ["short prompt"]
    assert prompt_chunks("", words) == [""]
    long_word = prompt_chunks("a " + "x" * 50, len, limit=20)
    assert all(len(c) <= 20 for c in long_word) and "".join(long_word).replace(" ", "") == "a" + "x" * 50


def test_captions_must_fit_the_tokens_sd_scripts_reads():
    cfg = defaults()
    cfg["characters"]["mira"]["trigger"] = "mira_sl"
    check_caption_length(cfg, "mira")  # the default vocabulary fits
    assert clip_tokens_at_least("mira_sl, solo, front view") == 8  # mira _ sl , solo , front view
    # captions carry the tags (the vocabulary's names), not the prompt phrases
    cfg["plan"]["poses"][" ".join(["standing on one leg while juggling"] * 12)] = "juggling"
    with pytest.raises(ConfigError, match="at least .* CLIP tokens, over the 75 that kohya sd-scripts"):
        check_caption_length(cfg, "mira")


def test_the_plan_log_says_where_the_text_came_from_and_that_nothing_was_cut():
    from synthlora.plan import prompt_report

    schema, features = load("rich")
    schema["properties"]["age"] = {"type": "string"}
    mapping = prompt_mapping(schema, "rich")
    cfg = defaults()
    plan = make_plan(features, cfg["plan"], cfg["generate"], mapping)
    log = "\n".join(prompt_report(plan, features, mapping, schema, cfg["generate"]))
    assert "character text from name, summary, art_style, body, palette, outfit and the objects of 'parts'" in log
    assert "must-preserve objects (first in every prompt that shows them): hair, star hairpin, eyes, jacket, belt, boots" in log
    assert "schema fields that never reach a prompt: age" in log
    assert "nothing is shortened" in log and "75-token chunks" in log
