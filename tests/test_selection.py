import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from synthlora.score import score_image
from synthlora.selection import select, to_tsv


def pattern(seed, size=64):
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    for _ in range(12):
        x0, y0 = rng.integers(0, size - 8, 2)
        d.rectangle([int(x0), int(y0), int(x0) + int(rng.integers(4, 24)), int(y0) + int(rng.integers(4, 24))],
                    fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im


def candidate(tmp_path, name, im, view):
    p = tmp_path / f"{name}.png"
    if im is None:
        p.write_bytes(b"not a png")
    else:
        im.save(p)
    return {"key": name, "tags": {"views": view}, "score": score_image(p)}


def test_rejects_failures_with_reasons_and_keeps_coverage(tmp_path):
    views = ["front", "side", "back"]
    cands = [candidate(tmp_path, f"clean{i}", pattern(i), views[i % 3]) for i in range(9)]
    cands.append(candidate(tmp_path, "broken", None, "front"))
    cands.append(candidate(tmp_path, "dupe", pattern(0).filter(ImageFilter.GaussianBlur(0.3)), "front"))
    cands.append(candidate(tmp_path, "blurry", pattern(99).filter(ImageFilter.GaussianBlur(6)), "side"))
    cands.append(candidate(tmp_path, "small", pattern(5, size=32), "back"))
    rows = {r["key"]: r for r in select(cands, count=6, max_duplicate_distance=6, blur_drop_fraction=0.1,
                                        expected_size=(64, 64))}
    assert "undecodable" in rows["broken"]["reason"] and not rows["broken"]["selected"]
    assert "near-duplicate of clean0" in rows["dupe"]["reason"]
    assert "blurriest" in rows["blurry"]["reason"]
    assert "wrong size" in rows["small"]["reason"]
    chosen = [r for r in rows.values() if r["selected"]]
    assert len(chosen) == 6
    assert {r["view"] for r in chosen} == set(views) and all(
        sum(r["view"] == v for r in chosen) == 2 for v in views), "round-robin over views"
    assert all(r["reason"] for r in rows.values())
    tsv = to_tsv(list(rows.values()))
    assert tsv.count("\n") == len(rows) + 1


def test_sharpness_orders_blur():
    from synthlora.score import sharpness

    sharp = pattern(1).convert("L")
    blurred = sharp.filter(ImageFilter.GaussianBlur(2))
    assert sharpness(np.asarray(sharp)) > 4 * sharpness(np.asarray(blurred))
