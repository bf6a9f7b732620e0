"""Per-image measures without a model or torch: decode check, size, sharpness, noise,
perceptual hashes, the background seen at the border, figure count, and burnt-in text (OCR).

This only measures; ``synthlora.selection`` judges the measures against thresholds in config.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Width of the border strip that stands for the background, as a fraction of the short side.
BORDER_FRACTION = 0.06
# A pixel belongs to the foreground when its colour is this far (RGB distance) from the border's.
FOREGROUND_DISTANCE = 40.0
# A connected foreground blob counts as a figure when it covers at least this fraction of the image.
FIGURE_MIN_AREA = 0.03
# Tesseract reads text best around 30 px high: small images are enlarged to this long side first.
OCR_MIN_SIDE = 512


class ScoreError(RuntimeError):
    pass


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: low for blurred images (the usual focus measure)."""
    g = gray.astype(np.float64)
    lap = g[1:-1, 2:] + g[1:-1, :-2] + g[2:, 1:-1] + g[:-2, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def noise_sigma(gray: np.ndarray) -> float:
    """Standard deviation of additive noise, Immerkær's estimator ("Fast noise variance
    estimation", 1996): a Laplacian-difference mask cancels image structure, leaving the noise."""
    from scipy.signal import convolve2d

    g = gray.astype(np.float64)
    if min(g.shape) < 3:
        return 0.0
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    h, w = g.shape
    total = np.abs(convolve2d(g, mask, mode="valid")).sum()
    return float(total * np.sqrt(0.5 * np.pi) / (6.0 * (w - 2) * (h - 2)))


def border_pixels(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    b = max(1, int(round(min(h, w) * BORDER_FRACTION)))
    return np.concatenate([arr[:b].reshape(-1, 3), arr[-b:].reshape(-1, 3),
                           arr[b:-b, :b].reshape(-1, 3), arr[b:-b, -b:].reshape(-1, 3)])


def figure_count(arr: np.ndarray, background_rgb: np.ndarray) -> tuple[int, float]:
    """Separate figures on the background: connected blobs of non-background colour that are big
    enough to be a body. Returns (count, foreground fraction). Meaningful on plain backgrounds,
    which is what a character dataset asks for."""
    from scipy import ndimage

    distance = np.linalg.norm(arr - background_rgb, axis=2)
    mask = ndimage.binary_opening(distance > FOREGROUND_DISTANCE, iterations=1)
    mask = ndimage.binary_closing(mask, iterations=2)
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0, 0.0
    areas = np.bincount(labels.ravel())[1:] / mask.size
    return int((areas >= FIGURE_MIN_AREA).sum()), round(float(mask.mean()), 4)


def ocr_words(rgb: Image.Image, tesseract: str, min_confidence: float) -> list[str]:
    """Words Tesseract reads with at least ``min_confidence`` (0-100); sparse-text mode, since
    watermarks and signatures are scattered fragments, not paragraphs."""
    exe = shutil.which(tesseract)
    if exe is None:
        raise ScoreError(f"score.ocr: the OCR program {tesseract!r} was not found. Install it "
                         "(Debian/Ubuntu: apt-get install tesseract-ocr) or set score.ocr: '' to skip text detection.")
    # A whole factor with nearest-neighbour keeps glyph edges crisp; smoothing filters cost letters.
    factor = max(1, -(-OCR_MIN_SIDE // max(rgb.size)))
    im = rgb.resize((rgb.width * factor, rgb.height * factor), Image.NEAREST) if factor > 1 else rgb
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ocr.png"
        im.save(src)
        proc = subprocess.run([exe, str(src), "-", "--psm", "11", "tsv"], capture_output=True, text=True,
                              timeout=120)
    if proc.returncode != 0:
        raise ScoreError(f"tesseract failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    words = []
    for line in proc.stdout.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 12:
            continue
        text = cols[11].strip()
        try:
            conf = float(cols[10])
        except ValueError:
            continue
        # Single glyphs are mostly shapes misread as letters; real text has two alphanumerics.
        if conf >= min_confidence and sum(ch.isalnum() for ch in text) >= 2:
            words.append(text)
    return words


def score_image(path: str | Path, ocr: str = "tesseract", ocr_min_confidence: float = 60.0) -> dict[str, Any]:
    import imagehash

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except Exception as exc:  # any decode failure makes the image unusable, whatever its cause
        return {"decodes": False, "error": f"{type(exc).__name__}: {exc}"}
    gray = np.asarray(rgb.convert("L"))
    arr = np.asarray(rgb, dtype=np.float64)
    border = border_pixels(arr)
    border_rgb = border.mean(0)
    figures, foreground = figure_count(arr, border_rgb)
    words = ocr_words(rgb, ocr, ocr_min_confidence) if ocr else None
    return {
        "decodes": True,
        "width": rgb.width,
        "height": rgb.height,
        "sharpness": round(sharpness(gray), 4),
        "noise": round(noise_sigma(gray), 4),
        "phash": str(imagehash.phash(rgb)),
        "dhash": str(imagehash.dhash(rgb)),
        "mean_rgb": [round(float(v), 2) for v in arr.reshape(-1, 3).mean(0)],
        "std_luma": round(float(gray.std()), 3),
        "border_rgb": [round(float(v), 2) for v in border_rgb],
        "border_std": round(float(border.std(0).mean()), 3),
        # share of the border within 30 RGB of its median colour: a backdrop stays plain where a figure
        # touches the edge (the std above does not)
        "border_plain": round(float((np.linalg.norm(border - np.median(border, 0), axis=1) <= 30).mean()), 4),
        "figures": figures,
        "foreground": foreground,
        "text_words": words,
        "text_chars": None if words is None else sum(len(w) for w in words),
    }
