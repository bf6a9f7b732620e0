"""The demo models load through the real code paths; model answers are schema-valid; the LoRA loads."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
from PIL import Image

from lora_check import assert_lora_changes_output
from synthlora.backends.transformers_vlm import TransformersAnalyzer, TransformersCaptioner

REPO_SCHEMA = json.loads((__import__("pathlib").Path(__file__).resolve().parents[1] / "config/features.schema.json").read_text())


@pytest.fixture(scope="module")
def vlm_dir(demo_models):
    return str(demo_models / "vlm")


def test_constrained_analysis_is_schema_valid_even_from_random_weights(vlm_dir, tmp_path):
    ref = tmp_path / "ref.png"
    Image.new("RGB", (48, 48), (20, 60, 200)).save(ref)
    analyzer = TransformersAnalyzer(vlm_dir, max_string_tokens=12, max_items=3)
    for attempt in range(3):  # greedy, then sampled retries
        data = json.loads(analyzer.analyze(ref, "a test character", "Describe it.", REPO_SCHEMA, attempt))
        jsonschema.validate(data, REPO_SCHEMA)
        assert 1 <= len(data["object"]) <= 3


def test_constrained_schema_features(vlm_dir):
    """enum, const, integer bounds, nested arrays and maxLength are all respected."""
    from synthlora.backends.transformers_vlm import TransformersVLM

    schema = {"type": "object", "required": ["kind", "n", "tags", "v", "ok"], "properties": {
        "kind": {"enum": ["cat", "dog", "caterpillar"]},
        "n": {"type": "integer", "minimum": 2, "maximum": 5},
        "tags": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "string", "maxLength": 4}},
        "v": {"const": "x"},
        "ok": {"type": "boolean"}}}
    vlm = TransformersVLM(vlm_dir, max_string_tokens=4)
    im = Image.new("RGB", (32, 32), "red")
    for attempt in range(3):
        jsonschema.validate(json.loads(vlm.ask_json(im, "?", schema, attempt)), schema)


def test_captioner_answers_from_the_vocabulary(vlm_dir):
    vocab = {"views": ["front view", "from side", "from behind"], "poses": ["sitting", "standing"]}
    tags = TransformersCaptioner(vlm_dir).tag(Image.new("RGB", (40, 40), "green"), vocab, "Tag it.")
    assert set(tags) == set(vocab) and all(tags[c] in vocab[c] for c in vocab)


def test_trained_lora_loads_in_diffusers_and_changes_the_output(finished, demo_models):
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    lora = finished.path("results/mira/lora/mira.safetensors")
    state = load_file(lora)
    unet_modules = {k.rsplit(".", 2)[0] for k in state if k.startswith("lora_unet_")}
    pipe = StableDiffusionXLPipeline.from_pretrained(str(demo_models / "sdxl"))
    targets = [n for n, m in pipe.unet.named_modules() if isinstance(m, torch.nn.Linear) and ".attentions." in n]
    assert len(unet_modules) == len(targets), "one LoRA module per attention-block Linear, as sd-scripts"
    assert_lora_changes_output(pipe, state, "mira_sl, solo", "mira", [(pipe.unet, len(targets))], boost=500)
