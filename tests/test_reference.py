"""The reference is read faithfully (16-bit, greyscale, palette, transparent), once, into
results/<c>/reference.png, and every model that looks at it reads that one file."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from synthlora.reference import load_reference, write_reference


def test_16_bit_greyscale_is_scaled_not_saturated(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")
        assert np.asarray(im.convert("RGB")).mean() > 250  # what convert("RGB") made of it: nearly all white
    rgb = np.asarray(load_reference(path))
    assert rgb.shape == (64, 64, 3)
    assert abs(int(rgb[-1, -1, 0]) - round(65520 / 257)) <= 1 and rgb[0, 0, 0] == 0
    assert 100 < rgb.mean() < 156  # a ramp, not a white square


def test_transparent_areas_are_laid_on_the_background_not_black(tmp_path):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[8:24, 8:24] = (200, 30, 30, 255)  # an opaque red square on a transparent field
    path = tmp_path / "cut-out.png"
    Image.fromarray(rgba, "RGBA").save(path)
    white = np.asarray(load_reference(path))
    assert tuple(white[0, 0]) == (255, 255, 255) and tuple(white[16, 16]) == (200, 30, 30)
    grey = np.asarray(load_reference(path, background=(128, 128, 128)))
    assert tuple(grey[0, 0]) == (128, 128, 128)


def test_palette_and_greyscale_become_the_same_rgb(tmp_path):
    arr = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    Image.fromarray(arr, "L").save(tmp_path / "grey.png")
    Image.fromarray(arr, "L").convert("P").save(tmp_path / "palette.png")
    grey, palette = np.asarray(load_reference(tmp_path / "grey.png")), np.asarray(load_reference(tmp_path / "palette.png"))
    assert grey.shape == palette.shape == (64, 64, 3)
    assert np.abs(grey.astype(int) - palette.astype(int)).max() <= 8


def test_written_reference_is_what_load_reference_returns(tmp_path):
    rgba = np.zeros((16, 16, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "clear.png")
    notes = write_reference(tmp_path / "clear.png", tmp_path / "out" / "reference.png")
    assert any("transparent" in n for n in notes)
    with Image.open(tmp_path / "out" / "reference.png") as im:
        assert im.mode == "RGB" and np.asarray(im).min() == 255


def test_not_a_picture_names_the_file(tmp_path):
    (tmp_path / "ref.png").write_text("<html>404</html>")
    with pytest.raises(ValueError, match=r"ref\.png.*not a picture"):
        load_reference(tmp_path / "ref.png")


@pytest.mark.workflow
def test_analysis_and_the_near_copy_guard_read_the_same_converted_file(fresh):
    """The analysis model and the reference embedding take results/<c>/reference.png (the select
    checkpoint, after the plan, takes it too: rules/common.smk select_input)."""
    dry = fresh.snakemake("-n", "results/mira/features.json", "results/mira/reference.embedding.json")
    jobs = fresh.jobs(dry)
    assert jobs["reference"] == 1 and jobs["analyze"] == 1 and jobs["embed_reference"] == 1, jobs
    blocks = {m[0]: m[1] for m in re.findall(r"rule (analyze|embed_reference):\n\s+input: ([^\n]*)", dry.output)}
    assert all("results/mira/reference.png" in blocks[r] for r in ("analyze", "embed_reference")), blocks
    assert all("characters/mira/reference.png" not in blocks[r] for r in ("analyze", "embed_reference")), blocks
