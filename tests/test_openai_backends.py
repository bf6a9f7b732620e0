"""The openai backends against the loopback stand-in: request shapes, strict schemas, faults."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from openai_standin import StandIn, strict_problem
from synthlora.backends import make_analyzer, make_captioner, make_generator
from synthlora.backends.base import ShotFailed
from synthlora.backends.openai_api import OpenAIConfigError, drop_added_nulls, to_strict_schema
from synthlora.features import load_schema, validation_problem
from synthlora.plan import pixel_inputs

KEY = "sk-test-unit-0123456789"
REPO_SCHEMA = "config/features.schema.json"


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("STANDIN_KEY", KEY)
    with StandIn(key=KEY) as server:
        yield server


def conn(api, **extra):
    return {"base_url": api.url, "api_key_env": "STANDIN_KEY", "timeout": 2.0, "max_retries": 3, **extra}


def chat_opts(api, **extra):
    return conn(api, **{"image_detail": "low", "max_output_tokens": 0, "temperature": None, "image_max_side": 64,
                        "usd_per_million_input_tokens": 1.0, "usd_per_million_output_tokens": 1.0, "retries": 1,
                        **extra})


def gen_opts(api, **extra):
    return conn(api, **{"size": "", "quality": "low", "background": "", "output_format": "png", "moderation": "",
                        "reference_mode": False, "input_fidelity": "", "usd_per_image": 0.05, **extra})


def shot(prompt="a red fox, front view", w=64, h=64):
    return {"key": "0" * 16, "prompt": prompt, "width": w, "height": h, "seed": 1}


def generator(api, model="gpt-image-2", **extra):
    return make_generator({"backend": "openai", "model": model, "openai": gen_opts(api, **extra)})


# ---- strict schema ----------------------------------------------------------------------


def test_user_schema_with_optional_fields_becomes_strict_and_answers_validate_against_the_original():
    schema = {"type": "object", "required": ["name"],
              "properties": {"name": {"type": "string", "minLength": 1},
                             "age": {"type": "integer"},
                             "items": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "string"}}}}}}
    assert strict_problem(schema) is not None, "the stand-in must refuse what strict mode refuses"
    strict = to_strict_schema(schema)
    assert strict_problem(strict) is None
    assert strict["properties"]["age"]["type"] == ["integer", "null"]
    answer = {"name": "Mira", "age": None, "items": [{"x": None}]}
    cleaned = drop_added_nulls(answer, schema)
    assert cleaned == {"name": "Mira", "items": [{}]}
    assert validation_problem(cleaned, schema) is None


def test_analyzer_sends_the_reference_and_returns_schema_valid_features(api):
    schema = load_schema(REPO_SCHEMA)
    analyzer = make_analyzer({"backend": "openai", "model": "gpt-5.5", "openai": chat_opts(api)})
    text = analyzer.analyze("characters/mira/reference.png", "Mira, red scarf", "Describe the character.", schema)
    assert validation_problem(json.loads(text), schema) is None
    assert api.calls_to("/chat/completions") == 1
    assert analyzer.usage and analyzer.usage[0]["prompt_tokens"] > 0


def test_captioner_answers_only_from_the_vocabulary(api):
    vocab = {"views": ["front view", "from side"], "poses": ["sitting", "standing"]}
    captioner = make_captioner({"backend": "openai", "model": "gpt-5.5", "openai": chat_opts(api)})
    tags = captioner.tag(Image.new("RGB", (32, 32), "red"), vocab, "Tag it.")
    assert set(tags) == set(vocab) and all(tags[c] in vocab[c] for c in vocab)


# ---- images -----------------------------------------------------------------------------


def test_generator_returns_the_requested_png_and_records_model_prompt_usage_request(api):
    image, prov = generator(api).generate(shot())
    assert image.size == (64, 64)
    assert prov["model"] == "gpt-image-2" and prov["request"]["size"] == "64x64"
    assert prov["revised_prompt"].startswith("stand-in:")
    assert prov["usage"]["output_tokens"] > 0 and prov["request_id"].startswith("req_")
    assert prov["reference_input"] is False
    again, _ = generator(api).generate(shot())
    other, _ = generator(api).generate(shot("a red fox, from behind"))
    assert again.tobytes() == image.tobytes() and other.tobytes() != image.tobytes()


def test_reference_mode_uses_images_edit_and_says_so(api):
    gen = make_generator({"backend": "openai", "model": "gpt-image-2",
                          "openai": gen_opts(api, reference_mode=True, input_fidelity="high")},
                         "characters/mira/reference.png")
    _, prov = gen.generate(shot())
    assert api.calls_to("/images/edits") == 1 and api.calls_to("/images/generations") == 0
    assert prov["reference_input"] is True and prov["request"]["input_fidelity"] == "high"


def test_malformed_requests_are_rejected_like_the_real_api_and_stop_the_job(api):
    with pytest.raises(OpenAIConfigError, match="size"):
        generator(api, model="gpt-image-1.5").generate(shot(w=64, h=64))  # only gpt-image-2 takes 64x64
    with pytest.raises(OpenAIConfigError, match="model"):
        generator(api, model="").generate(shot())


@pytest.mark.parametrize("kind", ["429", "500", "timeout", "drop"])
def test_transient_faults_are_retried_until_the_image_comes(api, kind):
    api.fault(kind, count=2, seconds=2.5)  # timeouts: longer than the client's 2 s
    image, _ = generator(api).generate(shot())
    assert image.size == (64, 64)
    assert api.calls_to("/images/generations") == 3


def test_moderation_refusal_and_exhausted_retries_fail_the_shot_with_a_reason(api):
    api.fault("moderation", match="knife")
    with pytest.raises(ShotFailed, match="moderation"):
        generator(api).generate(shot("holding a knife"))
    assert api.calls_to("/images/generations") == 1, "a refusal is not retried"
    api.fault("503", match="storm")
    with pytest.raises(ShotFailed, match="HTTP 503 after 3 retries"):
        generator(api).generate(shot("in a storm"))
    assert api.calls_to("/images/generations") == 1 + 4


def test_missing_key_names_the_variable(api, monkeypatch):
    monkeypatch.delenv("STANDIN_KEY")
    with pytest.raises(OpenAIConfigError, match="STANDIN_KEY"):
        generator(api)


def test_only_pixel_settings_of_the_images_api_enter_the_shot_key():
    base = {"backend": "openai", "model": "gpt-image-2", "steps": 30, "guidance_scale": 6.0, "dtype": "auto",
            "device": "auto", "openai": {"base_url": "", "api_key_env": "K", "timeout": 120, "max_retries": 4,
                                         "size": "", "quality": "high", "background": "", "output_format": "png",
                                         "moderation": "", "reference_mode": False, "input_fidelity": "",
                                         "usd_per_image": 0.05}}
    moved = json.loads(json.dumps(base))
    moved["openai"].update(base_url="http://proxy/v1", timeout=5, max_retries=9, usd_per_image=1.0, api_key_env="J")
    assert pixel_inputs(moved) == pixel_inputs(base)
    lower = json.loads(json.dumps(base))
    lower["openai"]["quality"] = "low"
    assert pixel_inputs(lower) != pixel_inputs(base)
    assert "steps" not in pixel_inputs(base)
    diffusers = {**base, "backend": "diffusers"}
    assert "openai" not in pixel_inputs(diffusers), "diffusers keys do not change with openai options"
