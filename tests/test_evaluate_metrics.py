"""Evaluation metrics and the best-epoch rule on constructed embeddings and metrics with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from synthlora.evaluate import (BASE, adherence_text, aggregate, combined_score, delivered_path, detect_failures,
                                identity_to_set, measure_run, pick_best, prompt_adherence, suite_items, summarize)


def test_identity_is_mean_cosine_to_the_reference_set():
    outputs = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    refs = np.array([[1.0, 0.0], [1.0, 1.0]])  # cos to e1: 1 and 1/sqrt2
    got = identity_to_set(outputs, refs)
    s = 1 / math.sqrt(2)
    np.testing.assert_allclose(got, [(1 + s) / 2, (0 + s) / 2, (-1 - s) / 2])


def test_identity_of_an_output_equal_to_every_reference_is_one_and_scale_does_not_matter():
    v = np.array([[0.3, -1.2, 2.0]])
    np.testing.assert_allclose(identity_to_set(5 * v, np.vstack([v, 2 * v])), [1.0])


def test_prompt_adherence_pairs_image_i_with_text_i():
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    texts = np.array([[0.0, 3.0], [0.0, 1.0]])  # first pair orthogonal, second identical
    np.testing.assert_allclose(prompt_adherence(images, texts), [0.0, 1.0])


def test_trigger_word_is_removed_from_the_adherence_text():
    assert adherence_text("mira_sl, oil painting style", "mira_sl") == "oil painting style"
    assert adherence_text("mira_sl", "mira_sl") == "mira_sl"


def _img(suite, ident, adh, fail=False, sharp=10.0):
    return {"suite": suite, "identity_dataset": ident, "identity_reference": ident / 2, "prompt_adherence": adh,
            "sharpness": sharp, "failures": ["blank image"] if fail else []}


def test_aggregate_and_combined_score():
    rows = [_img("a", 0.8, 0.2), _img("a", 0.6, 0.4, fail=True), _img("b", float("nan"), 0.3)]
    m = aggregate(rows)
    assert m["identity_dataset"] == pytest.approx(0.7)  # NaN (undecodable) is left out, not counted as 0
    assert m["failure_rate"] == pytest.approx(1 / 3)
    assert combined_score(m, {"identity_dataset": 2.0, "failure_rate": -3.0}) == pytest.approx(1.4 - 1.0)
    with pytest.raises(KeyError, match="identiy"):
        combined_score(m, {"identiy": 1.0})
    per_suite = measure_run(rows, {"prompt_adherence": 1.0})["suites"]
    assert per_suite["a"]["combined"] == pytest.approx(0.3) and per_suite["b"]["combined"] == pytest.approx(0.3)


def test_pick_best_takes_the_highest_never_the_baseline_and_ties_go_earlier():
    runs = {BASE: {"combined": 9.0, "failure_rate": 0.0},
            "000001": {"combined": 0.5, "failure_rate": 0.5},
            "000002": {"combined": 0.7, "failure_rate": 0.25},
            "000003": {"combined": 0.7, "failure_rate": 0.25},
            "000004": {"combined": float("nan"), "failure_rate": 0.0}}
    assert pick_best(runs) == "000002"
    assert pick_best(runs, "failure_rate") == "000004"  # lower is better for failures
    with pytest.raises(KeyError):
        pick_best(runs, "nonsense")


def test_summarize_writes_a_row_per_run_and_names_the_best_epoch():
    metrics = [{"run": r, "images": [_img("a", v, 0.1)]} for r, v in ((BASE, 0.1), ("000001", 0.9), ("000002", 0.4))]
    table, best = summarize(metrics, {"checkpoints": [{"epoch": 1, "step": 3}, {"epoch": 2, "step": 6}]},
                            {"identity_dataset": 1.0}, "combined")
    lines = [l.split("\t") for l in table.strip().splitlines()]
    assert [l[0] for l in lines[1:]] == [BASE, "000001", "000002"]
    header = lines[0]
    row1 = dict(zip(header, lines[2]))
    assert row1["best"] == "yes" and row1["step"] == "3"
    assert float(row1["delta_identity_dataset"]) == pytest.approx(0.8)
    assert best["epoch"] == 1 and best["value"] == pytest.approx(0.9)


def test_delivered_path_follows_best_json(tmp_path):
    (tmp_path / "best.json").write_text('{"epoch": 2}')
    loras = ["x/mira-000001.safetensors", "x/mira-000002.safetensors"]
    assert delivered_path(tmp_path / "best.json", loras) == loras[1]
    (tmp_path / "best.json").write_text('{"epoch": 3}')
    with pytest.raises(FileNotFoundError):
        delivered_path(tmp_path / "best.json", loras)


def test_suites_fill_the_trigger_and_repeat_per_seed():
    items = suite_items({"suites": {"flexibility": ["{trigger}, anime style"], "context": ["{trigger}, outdoors"]},
                         "seeds": [1, 7]}, "ada_x")
    assert [(i["suite"], i["prompt"], i["seed"]) for i in items] == [
        ("context", "ada_x, outdoors", 1), ("context", "ada_x, outdoors", 7),
        ("flexibility", "ada_x, anime style", 1), ("flexibility", "ada_x, anime style", 7)]
    assert len({i["name"] for i in items}) == 4


def test_failure_detectors_flag_blank_and_broken_outputs(tmp_path):
    Image.new("RGB", (32, 32), (120, 120, 120)).save(tmp_path / "blank.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert detect_failures(tmp_path / "noise.png")[1] == []
    assert "blank" in detect_failures(tmp_path / "blank.png")[1][0]
    assert "undecodable" in detect_failures(tmp_path / "broken.png")[1][0]
    # the hook: any extra detector adds its reason
    extra = lambda path, score, item, settings: "odd" if path.stem == "noise" else None  # noqa: E731
    assert detect_failures(tmp_path / "noise.png", [extra])[1] == ["odd"]


def test_selection_detectors_flag_text_extra_figures_and_a_stuck_background(tmp_path):
    """The selection stage's failure modes, found on evaluation outputs (seed 003's list)."""
    from constructed import figure, two_figures, with_text

    from synthlora.evaluate import dataset_background

    white, pink = (255, 255, 255), (240, 170, 200)
    for i in range(3):  # a dataset shot on a pink backdrop
        figure(i, background=pink).save(tmp_path / f"ds{i}.png")
    bg = dataset_background(sorted(tmp_path.glob("ds*.png")))
    assert np.allclose(bg, pink, atol=3)
    settings = {"dataset_background": bg}
    scene = {"suite": "context", "prompt": "ada_x, in a coffee shop"}
    portrait = {"suite": "consistency", "prompt": "ada_x, smiling"}
    cases = {
        "clean_white": (figure(5, background=white), scene, None),
        "text": (with_text(figure(50, scale=0.75)), portrait, "burnt-in text"),
        "pair": (two_figures(60), portrait, "more than one figure"),
        "stuck": (figure(8, background=pink), scene, "stuck background"),
        "pink_portrait": (figure(9, background=pink), portrait, None),  # a portrait may keep the backdrop
    }
    for name, (im, item, expected) in cases.items():
        im.save(tmp_path / f"{name}.png")
        reasons = detect_failures(tmp_path / f"{name}.png", item=item, settings=settings)[1]
        if expected is None:
            assert reasons == [], (name, reasons)
        else:
            assert len(reasons) == 1 and reasons[0].startswith(expected), (name, reasons)


def test_model_card_says_the_reference_was_a_generation_input_when_provenance_says_so(tmp_path):
    """Reference mode (issue 3): the card's provenance statement follows each image's record, so it
    never claims text-only generation for images that were made from the reference."""
    from synthlora.io import write_json
    from synthlora.model_card import provenance_rows, reference_statement

    ref = tmp_path / "reference.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(ref)
    files = []
    for i, ref_mode in enumerate([False, True, True]):
        Image.new("RGB", (8, 8), (i, 9, 9)).save(tmp_path / f"k{i}.png")
        write_json(tmp_path / f"k{i}.json", {"shot": {"key": f"k{i}"}, "source": "generated",
                                              "reference_input": ref_mode})
        files.append(str(tmp_path / f"k{i}.json"))
    analyze = {"backend": "openai", "model": "gpt-5.5"}
    rows = provenance_rows(files, str(ref))
    assert [r["reference_input"] for r in rows] == ["no", "yes", "yes"]
    assert "WAS an input to image generation for 2 of the 3" in reference_statement(rows, analyze, {})
    text_only = provenance_rows(files[:1], str(ref))
    assert "never an input to image generation" in reference_statement(text_only, analyze, {})
