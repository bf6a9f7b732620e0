"""Selection's checks on the labelled set of drawn pictures (tests/labelled.py): every defect
class rejected for its reason, the good pictures kept, one of each duplicate group, no file able
to stop a run; plus the intake's conversions, the summary that says why, and the detectors
evaluation shares with selection. No snakemake here (the folder workflow test is in
test_selection_workflow.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelled import REASONS, judge, select_labelled, write_labelled_set
from synthlora.config import config_problem

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def defaults():
    cfg = {"characters": {"x": {"reference": "r.png", "description": "d.md", "trigger": "x"}}}
    assert config_problem(cfg, REPO / "config" / "config.schema.yaml") is None
    return cfg["select"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, defaults):
    """The labelled set, run once through the folder plan, generate, score and select (the
    schema's thresholds; training at the set's size, 256: min_side 128; every passing picture kept)."""
    root = tmp_path_factory.mktemp("labelled")
    labels, reference = write_labelled_set(root / "images")
    settings = {**defaults, "count": 1000, "min_side": 128}
    rows, by_file = select_labelled(root / "images", reference, root / "work", settings)
    return {"labels": labels, "rows": rows, "by_file": by_file, "root": root, "reference": reference,
            "settings": settings}


def test_every_defect_class_is_rejected_for_its_reason_and_good_pictures_are_kept(labelled):
    table = judge(labelled["labels"], labelled["by_file"])
    wrong = {d: t["wrong"] for d, t in table.items() if t["wrong"]}
    assert not wrong, wrong
    assert set(REASONS) <= set(table), "the set has every defect class"
    good = [lb for lb in labelled["labels"] if lb.keep]
    assert len(labelled["labels"]) >= 40 and len(good) >= 20
    assert table["duplicate groups"]["kept"] == table["duplicate groups"]["files"] == 3


def test_rows_name_the_source_file_and_identical_files_are_one_candidate(labelled):
    rows, by_file = labelled["rows"], labelled["by_file"]
    assert len({r["key"] for r in rows}) == len(rows) == len(labelled["labels"]) - 1
    original = by_file["good_03.png"]
    assert Path(original["copies"]).name == "good_03_copy.png"
    assert all(r["file"] for r in rows)
    assert by_file["broken_truncated.png"]["reason"].startswith("unreadable file ")
    assert "broken_truncated.png" in by_file["broken_truncated.png"]["reason"]
    assert "truncated" in by_file["broken_truncated.png"]["reason"]
    assert "not a picture" in by_file["broken_not_an_image.png"]["reason"]
    assert "not decoded" in by_file["broken_bomb.png"]["reason"] and "3,600 megapixels" in by_file["broken_bomb.png"]["reason"]
    assert by_file["converted_transparent.png"]["converted"].startswith("transparent backdrop flattened onto [255, 255, 255]")
    assert "first frame" in by_file["converted_animated.png"]["converted"]


def test_ocr_reads_subtitles_and_logos_but_not_line_art(labelled):
    by_file = labelled["by_file"]
    for lb in labelled["labels"]:
        row = by_file[lb.file]
        if lb.defect in ("good", "converted"):
            assert row["text"] == "", (lb.file, row["text"])
    assert "together" in by_file["subtitle_yellow_2.png"]["text"]
    assert "ART" in by_file["corner_logo_1.png"]["text"]


def test_each_check_is_a_named_function_of_candidate_and_settings(labelled):
    from synthlora.selection import CHECKS, FLAGS, failed_checks

    assert all(callable(c) and c.check_name for c in CHECKS + FLAGS)
    names = [c.check_name for c in CHECKS]
    assert names.index("unreadable") < names.index("near-copy of reference") < names.index("burnt-in text")
    good = {"key": "k", "tags": {}, "source": "folder", "file": "x.png",
            "score": {"decodes": True, "width": 512, "height": 512, "edge_sharpness": 0.6, "sharpness": 900.0,
                      "noise": 0.0, "text_chars": 0, "text_words": [], "backdrop_marks": 0.0, "figures": 1,
                      "heads": 1, "backdrop_rgb": [255, 255, 255]}}
    s = {**labelled["settings"], "min_side": 256}
    assert failed_checks(good, s) == []
    blurred = {**good, "score": {**good["score"], "edge_sharpness": 0.2, "noise": 9.0}}
    assert [(c.check_name, r.split(" (")[0]) for c, r in failed_checks(blurred, s)] == [("blurred", "blurred"), ("noisy", "noisy")]
    broken = {**good, "failed": "x.png: not a picture"}
    assert [c.check_name for c, _ in failed_checks(broken, s)] == ["unreadable"], "a gate stops the checks"


def test_too_few_passing_stops_with_counts_per_reason(labelled):
    from synthlora.selection import summary, too_few_message

    rows = labelled["rows"]
    summ = summary(rows, {**labelled["settings"], "count": 60, "min_count": 40})
    good = sum(lb.keep for lb in labelled["labels"])
    assert summ["passed"] == summ["selected"] == good
    assert summ["rejected"]["burnt-in text"] == 6 and summ["rejected"]["unreadable"] == 3
    assert summ["rejected"]["identical copy"] == 1 and summ["files"] == len(labelled["labels"])
    assert "none padded with rejected ones" in summ["warning"]
    message = too_few_message(summ, "mira", "results/mira/selection.too_few.tsv", "results/mira/selection.too_few.png")
    assert f"only {good} of {len(rows)} candidates of mira passed every check" in message
    assert "select.min_count = 40" in message and "burnt-in text: 6" in message


def test_contact_sheet_says_file_names_whole_reasons_and_counts(labelled, tmp_path):
    from synthlora.selection import contact_sheet, counts_line, summary, tile_label

    rows = labelled["rows"]
    label = tile_label(labelled["by_file"]["subtitle_white_2.png"])
    assert label.startswith("subtitle_white_2.png DROP: burnt-in text") and label.endswith(")")
    assert "(+ identical good_03_copy.png)" in tile_label(labelled["by_file"]["good_03.png"])
    assert counts_line(rows).startswith(f"{sum(r['selected'] for r in rows)} of {len(rows)} kept; ")
    images = {r["key"]: labelled["root"] / "work" / "images" / f"{r['key']}.png" for r in rows}
    corners = contact_sheet(rows, images, tmp_path / "sheet.png", thumb=64, summ=summary(rows, labelled["settings"]))
    assert len(corners) == len(rows) and corners[0][1] > 0, "a header with the counts comes first"


def test_intake_converts_what_it_can_and_names_what_it_cannot(tmp_path):
    from synthlora.intake import PictureProblem, open_picture

    grey16 = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    grey16.save(tmp_path / "g16.png")
    rgb, notes = open_picture(tmp_path / "g16.png")
    assert notes == ["16-bit greyscale scaled to 8 bits"] and rgb.mode == "RGB"
    assert 250 <= np.asarray(rgb)[-1, -1, 0] <= 255 and np.asarray(rgb)[0, 0, 0] == 0, "scaled, not clipped white"
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    flat, notes = open_picture(buf.getvalue(), background=(211, 211, 211))
    assert flat.getpixel((0, 0)) == (211, 211, 211) and "transparent backdrop" in notes[0]
    with pytest.raises(PictureProblem, match="not a picture"):
        open_picture(b"<html>rate limited</html>")


def test_a_generator_reply_that_is_no_picture_fails_the_shot_and_the_run_goes_on(tmp_path, monkeypatch):
    """An API reply decoded inside the backend (as openai_api does) that turns out truncated or a
    decompression bomb: the shot is recorded as failed with the reason, nothing is raised."""
    from labelled import bomb_header
    import synthlora.backends as backends
    from synthlora.generation import generate_shot

    class Replies:
        def __init__(self, data):
            self.data = data

        def generate(self, shot):
            image = Image.open(io.BytesIO(self.data))
            image.load()
            return image, {"model": "stand-in"}

    good = io.BytesIO()
    Image.new("RGB", (32, 32), "white").save(good, format="PNG")
    for name, data in (("truncated", good.getvalue()[:60]), ("bomb", bomb_header())):
        monkeypatch.setattr(backends, "make_generator", lambda cfg, ref, data=data: Replies(data))
        shot = {"key": f"{name:0>16}"[-16:], "backend": "openai", "model": "m"}
        img, prov = tmp_path / f"{name}.png", tmp_path / f"{name}.json"
        generate_shot(shot, {"device": "cpu", "openai": {}}, None, img, prov, out=io.StringIO())
        record = json.loads(prov.read_text())
        assert record["status"] == "failed", name
        assert "could not be decoded" in record["reason"] or "unusable" in record["reason"], record["reason"]


def test_evaluation_shares_the_text_and_figure_detectors(labelled):
    from synthlora.evaluate import detect_failures

    images = labelled["root"] / "images"
    _, reasons = detect_failures(images / "subtitle_yellow_2.png", settings={"max_text_chars": 2})
    assert any(r.startswith("burnt-in text") for r in reasons), reasons
    _, reasons = detect_failures(images / "two_overlapping_2.png", settings={"max_text_chars": 2})
    assert any(r.startswith("more than one figure") for r in reasons), reasons
    _, reasons = detect_failures(images / "good_01.png", settings={"max_text_chars": 2})
    assert reasons == []


def test_observed_tags_drive_coverage_and_a_drifted_framing_is_flagged(defaults):
    from synthlora.selection import select

    def candidate(i, planned, seen):
        return {"key": f"k{i}", "source": "generated", "file": "", "tags": {"framings": planned},
                "observed": {"framings": seen},
                "score": {"decodes": True, "width": 256, "height": 256, "edge_sharpness": 0.6, "sharpness": 900.0,
                          "noise": 0.0, "text_chars": 0, "text_words": [], "backdrop_marks": 0.0, "figures": 1,
                          "heads": 1, "backdrop_rgb": [255, 255, 255],
                          "phash": ["0f" * 8, "f0" * 8, "ff00" * 4, "00ff" * 4][i]}}  # far apart
    # the plan asked for four full-body shots; the caption model sees two of them as portraits
    cands = [candidate(i, "full body", seen) for i, seen in
             enumerate(["full body", "full body", "portrait", "portrait"])]
    s = {**defaults, "count": 2, "min_side": 128, "coverage": ["framings"]}
    rows = {r["key"]: r for r in select(cands, s)}
    assert sorted(r["observed"] for r in rows.values() if r["selected"]) == ["framings: full body", "framings: portrait"]
    assert rows["k2"]["flags"].startswith("framing drifted: the caption model sees 'portrait', the shot asked for 'full body'")
    rejected = {r["key"]: r for r in select(cands, {**s, "reject_framing_drift": True})}
    assert not rejected["k2"]["selected"] and rejected["k2"]["failed_checks"] == "framing drifted"
