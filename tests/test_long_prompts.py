"""Prompts longer than CLIP's 77 tokens reach the image whole (issue 13): the diffusers backend
encodes them in 75-token chunks, as A1111 and ComfyUI do, instead of letting the pipeline cut them."""

from __future__ import annotations

import numpy as np
import pytest

from synthlora.backends.diffusers_gen import DiffusersGenerator
from synthlora.plan import DIFFUSERS_PROMPT_ENCODING


@pytest.fixture(scope="module", params=["sdxl", "sd15"])
def generator(request, demo_models):
    return DiffusersGenerator(str(demo_models / request.param), device="cpu", dtype="float32")


def render(generator, prompt, negative="lowres, blurry", chunked=True):
    shot = {"prompt": prompt, "negative_prompt": negative, "seed": 3, "steps": 2, "guidance_scale": 5.0,
            "width": 64, "height": 64}
    if chunked:
        shot["prompt_encoding"] = DIFFUSERS_PROMPT_ENCODING
    image, info = generator.generate(shot)
    return np.asarray(image), info


@pytest.mark.parametrize("negative", ["lowres, blurry", ""])
def test_a_short_prompt_renders_exactly_as_the_pipeline_renders_it(generator, negative):
    chunked, info = render(generator, "red hair, teal eyes", negative)
    plain, _ = render(generator, "red hair, teal eyes", negative, chunked=False)
    assert info["prompt_chunks"] == 1
    assert np.array_equal(chunked, plain)


def test_words_past_the_77th_token_change_the_image(generator):
    """The demo tokenizer has one token per character: the tail sits far past token 77."""
    head = "short dark-blue bob with a straight fringe, yellow star hairpin, teal eyes, " * 3
    a, info = render(generator, head + "red ankle boots")
    b, _ = render(generator, head + "green rubber boots")
    assert info["prompt_tokens"] > 150 and info["prompt_chunks"] >= 3
    assert not np.array_equal(a, b), "the end of a long prompt reaches the generator"
    # What the pipeline alone does: the tail is cut, so it cannot matter.
    cut_a, _ = render(generator, head + "red ankle boots", chunked=False)
    cut_b, _ = render(generator, head + "green rubber boots", chunked=False)
    assert np.array_equal(cut_a, cut_b)


def test_a_long_negative_prompt_is_chunked_too(generator):
    image, info = render(generator, "red hair", negative="lowres, blurry, jpeg artifacts, " * 8)
    assert image.shape == (64, 64, 3) and info["prompt_chunks"] == 1
