"""Selection on constructed candidate sets whose right answer is known."""

import numpy as np
import pytest
from PIL import Image

from constructed import blurred, figure, lightly_edited, noisy, two_figures, with_text
from synthlora.config import config_problem
from synthlora.score import score_image, sharpness
from synthlora.selection import (OverridesError, contact_sheet, identity_clusters, load_overrides, read_tsv,
                                 select, to_tsv)

REPO_SCHEMA = "config/config.schema.yaml"
DIM = 32


@pytest.fixture(scope="module")
def defaults():
    """The select settings a user gets without configuring anything (the schema's defaults)."""
    from pathlib import Path

    cfg = {"characters": {"x": {"reference": "r.png", "description": "d.md", "trigger": "x"}}}
    assert config_problem(cfg, Path(__file__).resolve().parents[1] / REPO_SCHEMA) is None
    return cfg["select"]


def unit(v):
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    """~30 scored candidates: clean figures plus one of each failure, with constructed identity
    embeddings (clean ones near one identity; the reference near it but not a copy)."""
    root = tmp_path_factory.mktemp("constructed")
    rng = np.random.default_rng(7)
    identity, stranger = unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))

    def near(v, spread=0.25):
        return list(unit(v + spread * unit(rng.normal(size=DIM))))

    reference = figure(999)
    ref_vector = near(identity, 0.6)
    views = ["front view", "from side", "from behind"]
    images = {f"clean{i}": (figure(i), near(identity), {"views": views[i % 3], "backgrounds": "white background"})
              for i in range(12)}
    bad = {
        "text": (with_text(figure(50, scale=0.75)), near(identity), "burnt-in text or watermark"),
        "two_figures": (two_figures(60), near(identity), "more than one figure"),
        "blurred": (blurred(figure(70)), near(identity), "blurred"),
        "noisy": (noisy(figure(80)), near(identity), "noisy"),
        "wrong_background": (figure(90, background=(30, 120, 40)), near(identity), "background is not the 'white background'"),
        "reference_copy": (reference, near(identity), "near-copy of reference (phash"),
        "reference_edited": (lightly_edited(reference), near(identity), "near-copy of reference (phash"),
        "reference_twin": (figure(300), ref_vector, "near-copy of reference (embedding"),
        "duplicate": (blurred(figure(0), 0.6), near(identity), "near-duplicate of clean0"),
        "off_identity": (figure(400), near(stranger), "off-identity"),
    }
    images.update({k: (im, vec, {"views": "front view", "backgrounds": "white background"}) for k, (im, vec, _) in bad.items()})
    candidates = []
    for key, (im, vec, tags) in images.items():
        path = root / f"{key}.png"
        im.save(path)
        candidates.append({"key": key, "tags": tags, "score": score_image(path), "vector": vec, "path": path})
    import imagehash

    ref = {"phash": str(imagehash.phash(reference)), "vector": ref_vector}
    return {"candidates": candidates, "reference": ref, "expected": {k: why for k, (_, _, why) in bad.items()}}


def run(constructed, defaults, **settings):
    s = {**defaults, "min_sharpness": 100, "blur_drop_fraction": 0.0, **settings}
    return {r["key"]: r for r in select(constructed["candidates"], s, (96, 96), constructed["reference"])}


def test_each_bad_image_is_rejected_for_its_reason_and_clean_ones_are_kept(constructed, defaults):
    rows = run(constructed, defaults, count=50)
    for key, why in constructed["expected"].items():
        assert not rows[key]["selected"], (key, rows[key]["reason"])
        assert rows[key]["reason"].startswith(why), (key, rows[key]["reason"])
    clean = [k for k in rows if k.startswith("clean")]
    assert all(rows[k]["selected"] for k in clean), {k: rows[k]["reason"] for k in clean if not rows[k]["selected"]}
    assert rows["text"]["text"] == "SAMPLE"
    assert rows["off_identity"]["identity"] < defaults["min_identity_similarity"] <= min(rows[k]["identity"] for k in clean)


def test_selection_keeps_the_plan_spread_and_breaks_ties_by_quality(constructed, defaults):
    cands = [c for c in constructed["candidates"] if c["key"].startswith("clean")]
    # Most candidates are front views: a quality-only pick could take only front views.
    cands = [{**c, "tags": {"views": "front view" if i < 8 else ["from side", "from behind"][i % 2]}}
             for i, c in enumerate(cands)]
    s = {**defaults, "count": 6, "blur_drop_fraction": 0.0}
    rows = select(cands, s, (96, 96), constructed["reference"])
    chosen = [r for r in rows if r["selected"]]
    assert sorted(r["view"] for r in chosen) == ["from behind"] * 2 + ["from side"] * 2 + ["front view"] * 2
    fronts = [r for r in rows if r["view"] == "front view"]
    kept, dropped = [r for r in fronts if r["selected"]], [r for r in fronts if not r["selected"]]
    assert min(r["score"] for r in kept) >= max(r["score"] for r in dropped), "the best front views are the ones kept"
    assert all("not needed" in r["reason"] for r in dropped)


def test_identity_keeps_the_largest_cluster_even_when_a_smaller_one_is_tighter():
    rng = np.random.default_rng(3)
    a, b = unit(rng.normal(size=DIM)), unit(rng.normal(size=DIM))
    vectors = np.stack([unit(a + 0.3 * unit(rng.normal(size=DIM))) for _ in range(10)]
                       + [unit(b + 0.05 * unit(rng.normal(size=DIM))) for _ in range(4)])
    labels, main, centre, cohesion = identity_clusters(vectors, max_distance=0.3)
    assert (labels == main).sum() == 10 and set(labels[10:]) != {main}
    assert centre @ a > 0.95 and 0.7 < cohesion < 1


def test_overrides_force_include_and_exclude_but_never_a_near_copy(constructed, defaults, tmp_path):
    cands = constructed["candidates"]
    keys = [c["key"] for c in cands]
    path = tmp_path / "overrides.yaml"
    path.write_text("include: [text, reference_copy]\nexclude: [clean0]\n")
    overrides = load_overrides(path, keys)
    s = {**defaults, "count": 5, "min_sharpness": 100}
    rows = {r["key"]: r for r in select(cands, s, (96, 96), constructed["reference"], overrides)}
    assert rows["text"]["selected"] and rows["text"]["reason"].startswith("force-included by overrides file")
    assert "burnt-in text" in rows["text"]["reason"], "the override says what it overrode"
    assert not rows["clean0"]["selected"] and rows["clean0"]["reason"].startswith("excluded by overrides file")
    assert not rows["reference_copy"]["selected"] and "force-include refused" in rows["reference_copy"]["reason"]
    assert sum(r["selected"] for r in rows.values()) == 5

    path.write_text("include: [clena3]\n")
    with pytest.raises(OverridesError, match=r"overrides\.yaml: include names clena3, which is not a candidate key"):
        load_overrides(path, keys)
    path.write_text("exclude: clean1\n")
    with pytest.raises(OverridesError, match="'exclude' must be a list"):
        load_overrides(path, keys)


def test_table_and_contact_sheet_explain_every_candidate(constructed, defaults, tmp_path):
    rows = list(run(constructed, defaults, count=8).values())
    (tmp_path / "selection.tsv").write_text(to_tsv(rows))
    back = read_tsv(tmp_path / "selection.tsv")
    assert [r["key"] for r in back] == [r["key"] for r in rows]
    assert list(back[0])[:3] == ["key", "selected", "reason"]
    assert {"score", "identity", "reference_similarity", "reference_phash_distance", "sharpness", "noise", "text",
            "figures", "border_rgb"} <= set(back[0])
    assert all(r["reason"] for r in back)
    sheet = tmp_path / "sheet.png"
    corners = contact_sheet(rows, {c["key"]: c["path"] for c in constructed["candidates"]}, sheet, thumb=64, columns=6)
    with Image.open(sheet) as im:
        arr = np.asarray(im.convert("RGB"))
    assert im.width == 6 * (64 + 8) and len(corners) == len(rows)
    for (x, y), r in zip(corners, rows):  # each frame's colour says selected (green) or rejected (red)
        red, green, _ = arr[y + 1, x + 1]
        assert (green > red) == r["selected"], r["key"]


def test_sharpness_orders_blur():
    sharp = figure(1).convert("L")
    assert sharpness(np.asarray(sharp)) > 4 * sharpness(np.asarray(blurred(figure(1), 2).convert("L")))


def test_a_vlm_yes_no_answer_rejects_with_the_question_as_reason(constructed, defaults):
    question = "Are two people or fused bodies in this image?"
    cands = [{**c, "answers": {question: "yes" if c["key"] == "clean1" else "no"}}
             for c in constructed["candidates"] if c["key"].startswith("clean")]
    rows = {r["key"]: r for r in select(cands, {**defaults, "count": 50, "vlm_questions": {question: "yes"}},
                                        (96, 96), constructed["reference"])}
    assert rows["clean1"]["reason"] == f"the VLM answered 'yes' to {question!r}"
    assert all(r["selected"] for k, r in rows.items() if k != "clean1")
    assert rows["clean2"]["answers"] == f"{question} no"


def test_ask_yes_no_constrains_answers_to_yes_or_no():
    from synthlora.selection import ask_yes_no

    class Recorder:  # a Captioner that answers the first allowed word, and shows what it was asked
        def tag(self, image, vocabulary, instruction):
            self.asked = (vocabulary, instruction)
            return {cat: words[0] for cat, words in vocabulary.items()}

    captioner = Recorder()
    answers = ask_yes_no(captioner, None, ["Is there text?", "Is the background plain?"])
    assert answers == {"Is there text?": "yes", "Is the background plain?": "yes"}
    vocabulary, instruction = captioner.asked
    assert all(words == ["yes", "no"] for words in vocabulary.values())
    assert "Is there text?" in instruction and "Is the background plain?" in instruction
