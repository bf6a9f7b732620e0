"""Per-image measures without a model or torch: decode check, size, sharpness (edge steepness and
Laplacian variance), noise, perceptual hashes (64-bit; 256-bit of the picture and of small crops
of it), the background seen at the border, faint marks on the backdrop, figures and heads, and
burnt-in text (OCR).

This only measures; ``synthlora.selection`` judges the measures against thresholds in config.
The measures are calibrated on drawn characters (flat fills, dark outlines, anti-aliased edges:
tests/drawn.py), where line art must not read as noise, blur or letters.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

# Bump when score_image's measures change: it is a param of rule score, so scores are remade.
MEASURES_VERSION = 2

# Width of the border strip that stands for the background, as a fraction of the short side.
BORDER_FRACTION = 0.06
# A pixel belongs to the foreground when its colour is this far (RGB distance) from the border's.
FOREGROUND_DISTANCE = 40.0
# A connected foreground blob counts as a figure when it covers at least this fraction of the image.
FIGURE_MIN_AREA = 0.03
# Tesseract reads text best around 30 px high: small images are enlarged to this long side first
# (subtitles ~15 px high in a 256-px picture become ~45 px).
OCR_MIN_SIDE = 768
# Edges are measured at most at this long side (a larger picture is reduced first, as training does).
EDGE_MAX_SIDE = 1024
# Perceptual hashes for duplicates and near-copies: 16x16 = 256 bits (the 64-bit pHash puts
# unrelated drawings of one character in one framing as close as 4 bits; 256 bits keeps them
# >= 42 apart while a JPEG re-save stays within 4 and a small crop, matched below, within ~30).
HASH_SIZE = 16
# Small crops whose hashes are kept beside the picture's, so that a crop of another picture
# matches one of them: the fraction removed across and down (independently), and where the crop
# sits (0: at the left/top, 0.5: centred, 1: at the right/bottom).
CROP_FRACTIONS = (0.0, 0.03, 0.06)
CROP_PLACES = (0.0, 0.5, 1.0)


class ScoreError(RuntimeError):
    pass


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: low for blurred images (the usual focus measure). It grows with
    the amount of detail, so it ranks pictures of one kind, not a picture on its own."""
    g = gray.astype(np.float64)
    lap = g[1:-1, 2:] + g[1:-1, :-2] + g[2:, 1:-1] + g[:-2, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def edge_sharpness(gray: np.ndarray, window: int = 9, min_contrast: float = 48.0) -> float | None:
    """How steep the picture's edges are for their own contrast, in the blurriest of four
    directions. At the centre of each edge (the steepest step between neighbouring pixels along
    the direction) the step is divided by the range across ``window`` pixels: 1 for a hard step,
    ~0.6 for an anti-aliased line, ~0.4/s for a Gaussian blur of sigma s; the 75th percentile
    over the edges is the measure. It does not grow with the amount of detail, so one threshold
    serves sparse line art and dense rendering alike; motion blur smears one direction, hence
    the minimum over directions. None when the picture has too few edges to say."""
    g = gray.astype(np.float64)
    if max(g.shape) > EDGE_MAX_SIDE:
        scale = EDGE_MAX_SIDE / max(g.shape)
        g = np.asarray(Image.fromarray(gray).resize((max(1, round(g.shape[1] * scale)),
                                                     max(1, round(g.shape[0] * scale))), Image.LANCZOS),
                       dtype=np.float64)
    r = window // 2
    h, w = g.shape
    if h <= 2 * r + 2 or w <= 2 * r + 2:
        return None
    p = np.pad(g, r + 1, mode="edge")
    per_direction = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        def at(t):  # the picture shifted t pixels along the direction
            return p[r + 1 + t * dy:r + 1 + t * dy + h, r + 1 + t * dx:r + 1 + t * dx + w]
        across = [at(t) for t in range(-r, r + 1)]
        spread = np.max(across, axis=0) - np.min(across, axis=0)
        step, before, after = np.abs(at(1) - at(0)), np.abs(at(0) - at(-1)), np.abs(at(2) - at(1))
        centre = (step >= before) & (step > after) & (spread >= min_contrast)
        centre[:r], centre[-r:], centre[:, :r], centre[:, -r:] = False, False, False, False
        if centre.sum() < 20:
            return None
        per_direction.append(float(np.percentile(step[centre] / spread[centre], 75)))
    return round(min(per_direction), 4)


def noise_sigma(gray: np.ndarray) -> float:
    """Standard deviation of additive noise: Immerkær's Laplacian-difference mask ("Fast noise
    variance estimation", 1996) cancels smooth structure, and the median of its response (not
    the mean) ignores edges, so dense line art on flat fills reads as clean while grain reads
    as grain."""
    from scipy.signal import convolve2d

    g = gray.astype(np.float64)
    if min(g.shape) < 3:
        return 0.0
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = np.abs(convolve2d(g, mask, mode="valid"))
    # for Gaussian noise the response is N(0, 6 sigma); the median of |N(0, 1)| is 0.6745
    return float(np.median(response) / (6.0 * 0.6745))


def border_pixels(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    b = max(1, int(round(min(h, w) * BORDER_FRACTION)))
    return np.concatenate([arr[:b].reshape(-1, 3), arr[-b:].reshape(-1, 3),
                           arr[b:-b, :b].reshape(-1, 3), arr[b:-b, -b:].reshape(-1, 3)])


def foreground_mask(arr: np.ndarray, background_rgb: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    distance = np.linalg.norm(arr - background_rgb, axis=2)
    mask = ndimage.binary_opening(distance > FOREGROUND_DISTANCE, iterations=1)
    return ndimage.binary_closing(mask, iterations=2)


def figure_count(arr: np.ndarray, background_rgb: np.ndarray) -> tuple[int, float]:
    """Separate figures on the background: connected blobs of non-background colour that are big
    enough to be a body. Returns (count, foreground fraction). Meaningful on plain backgrounds,
    which is what a character dataset asks for."""
    count, _, foreground = figures_and_heads(arr, background_rgb)
    return count, foreground


def figures_and_heads(arr: np.ndarray, background_rgb: np.ndarray) -> tuple[int, int, float]:
    """(separate figures, the most heads on one figure's outline, foreground fraction).

    Two figures that overlap are one blob; their two heads still show on its top outline as two
    domes of like width with a deep dip between them. A raised arm, a strand of hair or a hat's
    tip is a narrow bump beside the head, not a second dome."""
    from scipy import ndimage

    mask = foreground_mask(arr, background_rgb)
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0, 0, 0.0
    areas = np.bincount(labels.ravel())[1:] / mask.size
    figures = np.flatnonzero(areas >= FIGURE_MIN_AREA) + 1
    heads = max((heads_on_outline(labels == i) for i in figures), default=0)
    return int(len(figures)), int(heads), round(float(mask.mean()), 4)


def heads_on_outline(blob: np.ndarray) -> int:
    """Head-like domes along a blob's top outline (its skyline), once thin protrusions are opened
    away: neighbouring peaks count apart when both domes, measured half-way down the dip between
    them, are of like width (the narrower at least half the wider) and the dip is at least 0.25
    times the narrower's width deep (and 5% of the blob's height): two heads side by side,
    touching or not."""
    from scipy import ndimage
    from scipy.signal import find_peaks

    if max(blob.shape) > 256:  # the outline's shape, not its pixels: a small copy will do
        step = -(-max(blob.shape) // 256)
        blob = blob[::step, ::step]
    rows = np.flatnonzero(blob.any(1))
    if not len(rows):
        return 0
    height = rows[-1] - rows[0] + 1
    # thin things sticking out (a strand of hair, a raised arm, a hat's tip) are opened away first
    blob = ndimage.binary_opening(blob, iterations=max(1, round(0.025 * height)))
    if not blob.any():
        return 1
    skyline = np.where(blob.any(0), blob.shape[0] - blob.argmax(0), 0).astype(np.float64)
    skyline = ndimage.uniform_filter1d(skyline, max(1, blob.shape[1] // 64))
    peaks, _ = find_peaks(np.concatenate([[0.0], skyline, [0.0]]), prominence=0.05 * height)
    peaks = peaks - 1
    heads = 1
    for a, b in zip(peaks[:-1], peaks[1:]):
        saddle = skyline[a:b + 1].min()
        depth = min(skyline[a], skyline[b]) - saddle
        if depth < 0.05 * height:
            continue
        level = saddle + depth / 2
        wa, wb = _run_width(skyline, a, level), _run_width(skyline, b, level)
        if min(wa, wb) >= 0.5 * max(wa, wb) and depth >= 0.25 * min(wa, wb):
            heads += 1
    return heads


def _run_width(values: np.ndarray, i: int, level: float) -> int:
    above = values >= level
    left = i
    while left > 0 and above[left - 1]:
        left -= 1
    right = i
    while right < len(values) - 1 and above[right + 1]:
        right += 1
    return right - left + 1


def backdrop_marks(arr: np.ndarray, background_rgb: np.ndarray) -> float:
    """Share of the backdrop that is faintly marked: regions 12+ RGB off the backdrop's colour that
    hold no strong colour (none 120+ off). A semi-transparent tiled watermark leaves them all over
    the backdrop; clean art leaves none: its anti-aliasing, a blur's halo and a JPEG's ringing
    belong to the figure's region (which has strong colour), and flat backdrops stay within 12."""
    from scipy import ndimage

    distance = np.linalg.norm(arr - background_rgb, axis=2)
    near = distance < 12
    regions, _ = ndimage.label(~near)
    figure = np.isin(regions, np.unique(regions[distance > 120]))
    marks = ~near & ~figure
    total = int((near | marks).sum())
    return round(float(marks.sum()) / total, 5) if total else 0.0


def crop_hashes(rgb: Image.Image) -> list[str]:
    """256-bit perceptual hashes of small crops of the picture (CROP_FRACTIONS across and down x
    CROP_PLACES): a crop of another picture, trimmed on any side by up to ~8%, matches one of them."""
    import imagehash

    small = rgb.resize((256, 256), Image.LANCZOS) if max(rgb.size) > 256 else rgb
    w, h = small.size
    out = []
    for fx in CROP_FRACTIONS:
        for fy in CROP_FRACTIONS:
            cw, ch = round(w * fx), round(h * fy)
            if not cw and not ch:
                continue
            for py in CROP_PLACES if ch else (0.5,):
                for px in CROP_PLACES if cw else (0.5,):
                    left, top = round(cw * px), round(ch * py)
                    crop = small.crop((left, top, w - cw + left, h - ch + top))
                    out.append(str(imagehash.phash(crop, hash_size=HASH_SIZE)))
    return out


def ocr_words(rgb: Image.Image, tesseract: str, min_confidence: float) -> list[str]:
    """Words of burnt-in text Tesseract finds, kept only when they look like text and not like line
    art Tesseract forced into letters (see ``text_words``). Three readings of the enlarged picture:
    as it is; its negative (white subtitles with a dark outline read best inverted); and its ink,
    every pixel off the backdrop's colour as black (a coloured signature or logo beside the
    figure). Sparse-text mode, since watermarks and signatures are scattered fragments."""
    exe = shutil.which(tesseract)
    if exe is None:
        raise ScoreError(f"score.ocr: the OCR program {tesseract!r} was not found. Install it "
                         "(Debian/Ubuntu: apt-get install tesseract-ocr) or set score.ocr: '' to skip text detection.")
    factor = max(1, -(-OCR_MIN_SIDE // max(rgb.size)))
    arr = np.asarray(rgb, dtype=np.float64)
    ink = np.linalg.norm(arr - np.median(border_pixels(arr), 0), axis=2) > FOREGROUND_DISTANCE
    ink_image = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8))
    found = []
    for variant in (rgb, ImageOps.invert(rgb), ink_image):
        big = variant.resize((rgb.width * factor, rgb.height * factor), Image.LANCZOS) if factor > 1 else variant
        found += tesseract_words(exe, big)
    return text_words(found, min_confidence)


def tesseract_words(exe: str, image: Image.Image) -> list[dict]:
    """Every word box of ``tesseract --psm 11 tsv``: text, confidence (0-100), left, top, width, height."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "ocr.png"
        image.save(src)
        proc = subprocess.run([exe, str(src), "-", "--psm", "11", "tsv"], capture_output=True, text=True,
                              timeout=120)
    if proc.returncode != 0:
        raise ScoreError(f"tesseract failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    words = []
    for line in proc.stdout.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 12 or not cols[11].strip():
            continue
        try:
            conf, box = float(cols[10]), [int(v) for v in cols[6:10]]
        except ValueError:
            continue
        words.append({"text": cols[11].strip(), "conf": conf, "left": box[0], "top": box[1], "width": box[2],
                      "height": max(1, box[3])})
    return words


def _alnum(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def text_words(words: list[dict], min_confidence: float) -> list[str]:
    """The words that are text, in reading order, each once. Line art (hair strands, pleats, an
    eye) makes Tesseract report short words — 'all', 'ey', '10)' — at any confidence, one at a
    time. Text is kept when it is:

    - confident (>= min_confidence) and at least 4 letters/digits long, or confident, 2+ long and
      on one line with other confident words totalling 5+ letters/digits ('ART BY KUMO'); or
    - at any confidence, 6+ letters/digits with the proportions of a line of type (each character
      0.3-1.0 times as wide as the line is high): Tesseract finds a line of outlined subtitles but
      reads it as one long low-confidence word."""
    confident = [w for w in words if w["conf"] >= min_confidence and _alnum(w["text"]) >= 2]
    confident_ids = {id(w) for w in confident}

    def same_line(a, b):
        ca, cb = a["top"] + a["height"] / 2, b["top"] + b["height"] / 2
        return abs(ca - cb) < 0.5 * max(a["height"], b["height"]) and \
            max(a["height"], b["height"]) < 1.6 * min(a["height"], b["height"])

    kept = []
    for w in words:
        n = _alnum(w["text"])
        if id(w) in confident_ids and (n >= 4 or n + sum(_alnum(v["text"]) for v in confident
                                                 if v is not w and same_line(v, w)) >= 5):
            kept.append(w)
        elif n >= 6 and 0.3 <= w["width"] / w["height"] / len(w["text"]) <= 1.0:
            kept.append(w)
    # the same word read from the picture and from its negative counts once
    unique: list[dict] = []
    for w in sorted(kept, key=lambda w: -w["conf"]):
        if not any(_overlap(w, u) > 0.5 for u in unique):
            unique.append(w)
    return [w["text"] for w in sorted(unique, key=lambda w: (round(w["top"] / max(8, w["height"])), w["left"]))]


def _overlap(a: dict, b: dict) -> float:
    x = max(0, min(a["left"] + a["width"], b["left"] + b["width"]) - max(a["left"], b["left"]))
    y = max(0, min(a["top"] + a["height"], b["top"] + b["height"]) - max(a["top"], b["top"]))
    inter = x * y
    return inter / min(a["width"] * a["height"], b["width"] * b["height"])


def score_image(path: str | Path, ocr: str = "tesseract", ocr_min_confidence: float = 60.0) -> dict[str, Any]:
    """Every measure of one picture. A file that is no usable picture gets ``decodes: false`` and
    the reason (from synthlora.intake), never an exception."""
    import imagehash

    from synthlora.intake import PictureProblem, open_picture

    try:
        rgb, notes = open_picture(Path(path))
    except PictureProblem as exc:
        return {"decodes": False, "error": str(exc)}
    gray = np.asarray(rgb.convert("L"))
    arr = np.asarray(rgb, dtype=np.float64)
    border = border_pixels(arr)
    border_rgb = border.mean(0)
    figures, heads, foreground = figures_and_heads(arr, border_rgb)
    words = ocr_words(rgb, ocr, ocr_min_confidence) if ocr else None
    return {
        "decodes": True,
        "width": rgb.width,
        "height": rgb.height,
        "sharpness": round(sharpness(gray), 4),
        "edge_sharpness": edge_sharpness(gray),
        "noise": round(noise_sigma(gray), 4),
        "phash": str(imagehash.phash(rgb)),
        "phash256": str(imagehash.phash(rgb, hash_size=HASH_SIZE)),
        "phash256_crops": crop_hashes(rgb),
        "dhash": str(imagehash.dhash(rgb)),
        "mean_rgb": [round(float(v), 2) for v in arr.reshape(-1, 3).mean(0)],
        "std_luma": round(float(gray.std()), 3),
        "border_rgb": [round(float(v), 2) for v in border_rgb],
        "border_std": round(float(border.std(0).mean()), 3),
        # share of the border within 30 RGB of its median colour: a backdrop stays plain where a figure
        # touches the edge (the std above does not)
        "border_plain": round(float((np.linalg.norm(border - np.median(border, 0), axis=1) <= 30).mean()), 4),
        # the backdrop's colour: the border's median, which a figure touching the edge does not shift
        "backdrop_rgb": [round(float(v), 2) for v in np.median(border, 0)],
        "backdrop_marks": backdrop_marks(arr, np.median(border, 0)),
        "figures": figures,
        "heads": heads,
        "foreground": foreground,
        "text_words": words,
        "text_chars": None if words is None else sum(_alnum(w) for w in words),
        **({"converted": notes} if notes else {}),
    }
